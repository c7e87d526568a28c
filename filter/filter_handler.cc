// filter_handler.cc: one STAGE_FILTER job -> FilterVerdict (see
// filter_handler.h). Order: size limit, rules (first terminal match decides),
// scanner (unless a rule accepted), DKIM signing of what will be delivered
// (ACCEPT and HOLD).
#include "filter/filter_handler.h"

#include <glog/logging.h>

#include <chrono>

namespace filter {
namespace {

using Verdict = mailfarm::FilterVerdict;

void SetVerdict(Verdict* v, Verdict::Action action, const std::string& dsn,
                const std::string& text, const std::string& rule) {
  v->set_action(action);
  v->set_dsn(dsn);
  v->set_text(text);
  v->set_rule(rule);
}

// A header value from scanner output: printable, one line, bounded.
std::string SafeHeaderValue(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= 900) break;
    out.push_back(c < 32 || c == 127 ? ' ' : static_cast<char>(c));
  }
  return out;
}

void AddHeader(Verdict* v, const std::string& name, const std::string& value) {
  mailfarm::Header* h = v->add_add_headers();
  h->set_name(name);
  h->set_value(value);
}

// Answers every job with the same TEMPFAIL (a config that no longer loads).
class BrokenFilterHandler : public farm::JobHandler {
 public:
  explicit BrokenFilterHandler(std::string why) : why_(std::move(why)) {}
  void Handle(const mailfarm::Job&, mailfarm::Result* result) override {
    SetVerdict(result->mutable_verdict(), Verdict::TEMPFAIL, "4.3.5",
               "content filter configuration error: " + why_, "config");
    result->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
    result->set_dsn("4.3.5");
    result->set_text(result->verdict().text());
  }

 private:
  std::string why_;
};

}  // namespace

farm::StatusOr<FilterTables> LoadFilterTables(
    const mailfarm::config::FilterConfig& config) {
  auto rules = RuleSet::Compile(config);
  if (!rules.ok()) return rules.status();
  FilterTables tables{config, std::move(rules.value()), {}};
  for (int i = 0; i < config.dkim_size(); ++i) {
    auto signer = DkimSigner::Load(config.dkim(i));
    if (!signer.ok()) {
      return farm::Status::Invalid("filter_rules.dkim[" + std::to_string(i) +
                                   "]: " + signer.status().message());
    }
    tables.signers.push_back(std::move(signer.value()));
  }
  if (config.has_scanner() && config.scanner().argv_size() > 0 &&
      config.scanner().argv(0).empty()) {
    return farm::Status::Invalid("filter_rules.scanner.argv: empty command");
  }
  return tables;
}

FilterHandler::FilterHandler(FilterTables tables, UnixClock now)
    : tables_(std::move(tables)),
      scanner_(tables_.config.scanner()),
      now_(std::move(now)) {
  if (!now_) {
    now_ = [] {
      return static_cast<int64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count());
    };
  }
}

void FilterHandler::Handle(const mailfarm::Job& job, mailfarm::Result* result) {
  Verdict* verdict = result->mutable_verdict();
  if (job.stage() != mailfarm::STAGE_FILTER) {
    LOG(ERROR) << job.qid() << ": filter got a job for stage "
               << mailfarm::Stage_Name(job.stage());
    SetVerdict(verdict, Verdict::TEMPFAIL, "4.3.0",
               "filter: job is not for the filter stage", "stage");
  } else if (job.body_size() > tables_.config.max_message_bytes()) {
    SetVerdict(verdict, Verdict::REJECT, "5.3.4",
               "message size " + std::to_string(job.body_size()) +
                   " exceeds the content filter's limit of " +
                   std::to_string(tables_.config.max_message_bytes()),
               "size-limit");
  } else {
    auto now = std::chrono::steady_clock::now();
    Deadline deadline =
        now + std::chrono::milliseconds(tables_.config.time_limit_ms());
    if (job.deadline_unix_ms() > 0) {
      int64_t left_ms = job.deadline_unix_ms() -
                        std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
      deadline = std::min(deadline, now + std::chrono::milliseconds(
                                              std::max<int64_t>(left_ms, 0)));
    }
    auto data = ReadMessageRange(job.message_path(), job.body_offset(),
                                 job.body_size());
    if (!data.ok()) {
      SetVerdict(verdict, Verdict::TEMPFAIL, "4.3.0",
                 "cannot read the message: " + data.status().message(), "read");
    } else {
      Decide(job, ParseMessage(std::move(data.value())), deadline, verdict);
    }
  }
  switch (verdict->action()) {
    case Verdict::REJECT:
      result->set_outcome(mailfarm::OUTCOME_PERMFAIL);
      break;
    case Verdict::TEMPFAIL:
      result->set_outcome(mailfarm::OUTCOME_TEMPFAIL);
      break;
    default:
      result->set_outcome(mailfarm::OUTCOME_OK);
  }
  result->set_dsn(verdict->dsn());
  result->set_text(verdict->text());
  LOG(INFO) << job.qid()
            << ": filter: action=" << Verdict::Action_Name(verdict->action())
            << ", rule=" << verdict->rule() << ", dsn=" << verdict->dsn()
            << ", added_headers=" << verdict->add_headers_size() << " ("
            << verdict->text() << ")";
}

void FilterHandler::Decide(const mailfarm::Job& job, const Message& message,
                           Deadline deadline, Verdict* verdict) {
  RuleDecision decision = tables_.rules.Evaluate(message, deadline);
  for (const auto& h : decision.add_headers) *verdict->add_add_headers() = h;
  using Kind = RuleDecision::Kind;
  switch (decision.kind) {
    case Kind::kTimeout:
      SetVerdict(verdict, Verdict::TEMPFAIL, "4.3.0",
                 "content filter time limit of " +
                     std::to_string(tables_.config.time_limit_ms()) +
                     " ms reached",
                 decision.rule);
      return;
    case Kind::kReject:
      SetVerdict(
          verdict, Verdict::REJECT, "5.7.1",
          decision.text.empty() ? "message content rejected" : decision.text,
          decision.rule);
      return;
    case Kind::kDiscard:
      SetVerdict(
          verdict, Verdict::DISCARD, "2.0.0",
          decision.text.empty() ? "discarded by content filter" : decision.text,
          decision.rule);
      return;
    case Kind::kHold:
      SetVerdict(
          verdict, Verdict::HOLD, "4.7.0",
          decision.text.empty() ? "held by content filter" : decision.text,
          decision.rule);
      MaybeSign(job, message, verdict);
      return;
    case Kind::kAccept:
      SetVerdict(verdict, Verdict::ACCEPT, "2.0.0", decision.text,
                 decision.rule);
      MaybeSign(job, message, verdict);
      return;
    case Kind::kNone:
      break;
  }
  SetVerdict(verdict, Verdict::ACCEPT, "2.0.0", "", "");
  if (scanner_.enabled()) {
    const auto& sc = scanner_.config();
    ScanResult scan = scanner_.Scan(message.data, deadline);
    if (scan.failed) {
      LOG(WARNING) << job.qid() << ": scanner " << sc.argv(0)
                   << " failed: " << scan.reason;
      if (!sc.fail_open()) {
        SetVerdict(verdict, Verdict::TEMPFAIL, "4.3.0",
                   "content scanner failed: " + scan.reason, "scanner");
        return;
      }
      AddHeader(verdict, sc.header_name(),
                "unchecked (scanner failed: " + scan.reason + ")");
      verdict->set_rule("scanner");
    } else if (scan.verdict == ScanResult::Verdict::kReject) {
      SetVerdict(verdict, Verdict::REJECT, "5.7.1",
                 "rejected by content scanner" +
                     (scan.first_line.empty()
                          ? ""
                          : ": " + SafeHeaderValue(scan.first_line)),
                 "scanner");
      return;
    } else {
      if (!scan.first_line.empty()) {
        AddHeader(verdict, sc.header_name(), SafeHeaderValue(scan.first_line));
      }
      verdict->set_rule("scanner");
    }
  }
  MaybeSign(job, message, verdict);
}

void FilterHandler::MaybeSign(const mailfarm::Job& job, const Message& message,
                              Verdict* verdict) {
  if (tables_.signers.empty()) return;
  // The From: domain first (what DMARC aligns with), then the envelope
  // sender's.
  const std::string candidates[] = {
      AddressDomain(ExtractAddress(message.FirstValue("from"))),
      AddressDomain(job.sender())};
  for (const std::string& domain : candidates) {
    if (domain.empty()) continue;
    for (const DkimSigner& signer : tables_.signers) {
      if (signer.domain() != domain) continue;
      std::vector<mailfarm::Header> added(verdict->add_headers().begin(),
                                          verdict->add_headers().end());
      auto signature = signer.Sign(added, message, now_());
      if (signature.ok()) {
        AddHeader(verdict, "DKIM-Signature", signature.value());
      } else if (signature.status().code() == farm::Status::Code::kInvalid) {
        LOG(WARNING) << job.qid()
                     << ": not DKIM-signed: " << signature.status().message();
      } else {
        SetVerdict(verdict, Verdict::TEMPFAIL, "4.3.0",
                   signature.status().message(), "dkim");
      }
      return;
    }
  }
}

std::unique_ptr<farm::JobHandler> MakeFilterHandler(
    const mailfarm::config::Config& config) {
  auto tables = LoadFilterTables(config.filter_rules());
  if (!tables.ok()) {
    LOG(ERROR) << "filter tables: " << tables.status().message();
    return std::make_unique<BrokenFilterHandler>(tables.status().message());
  }
  LOG(INFO) << "filter loaded: " << tables->rules.size() << " rules, "
            << tables->signers.size() << " DKIM keys, scanner "
            << (config.filter_rules().scanner().argv_size() ? "on" : "off");
  return std::make_unique<FilterHandler>(std::move(tables.value()));
}

}  // namespace filter
