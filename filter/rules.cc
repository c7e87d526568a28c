// rules.cc: PCRE2 compilation and evaluation of filter rules (see rules.h).
#include "filter/rules.h"

#include <glog/logging.h>

#include <cctype>

namespace filter {
namespace {

std::string Pcre2Error(int code) {
  PCRE2_UCHAR buffer[256];
  int n = pcre2_get_error_message(code, buffer, sizeof buffer);
  if (n < 0) return "PCRE2 error " + std::to_string(code);
  return std::string(reinterpret_cast<const char*>(buffer),
                     static_cast<size_t>(n));
}

bool IsFieldNameChar(unsigned char c) { return c > 32 && c < 127 && c != ':'; }

// Calls fn(line) for every body line, without its line end.
template <typename Fn>
bool ForEachBodyLine(std::string_view body, Fn fn) {
  while (!body.empty()) {
    size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!fn(line)) return false;
    if (nl == std::string_view::npos) break;
    body.remove_prefix(nl + 1);
  }
  return true;
}

}  // namespace

farm::StatusOr<mailfarm::Header> ParseHeaderLine(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return farm::Status::Invalid("header \"" + std::string(text) +
                                 "\": expected \"Name: value\"");
  }
  std::string_view name = text.substr(0, colon);
  for (unsigned char c : name) {
    if (!IsFieldNameChar(c)) {
      return farm::Status::Invalid("header \"" + std::string(text) +
                                   "\": bad field name");
    }
  }
  std::string_view value = text.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  for (char c : value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return farm::Status::Invalid("header \"" + std::string(name) +
                                   "\": line break in value");
    }
  }
  mailfarm::Header header;
  header.set_name(std::string(name));
  header.set_value(std::string(value));
  return header;
}

farm::StatusOr<RuleSet> RuleSet::Compile(
    const mailfarm::config::FilterConfig& config) {
  RuleSet set;
  set.context_.reset(pcre2_match_context_create(nullptr));
  if (!set.context_)
    return farm::Status::Error("pcre2_match_context_create failed");
  pcre2_set_match_limit(set.context_.get(), config.regex_match_limit());
  pcre2_set_depth_limit(set.context_.get(), config.regex_depth_limit());
  for (int i = 0; i < config.rule_size(); ++i) {
    const auto& rule = config.rule(i);
    Compiled c;
    c.rule = rule;
    c.name =
        rule.name().empty() ? "rule[" + std::to_string(i) + "]" : rule.name();
    const std::string where =
        "filter_rules.rule[" + std::to_string(i) + "] (" + c.name + "): ";
    if (rule.pattern().empty())
      return farm::Status::Invalid(where + "empty pattern");
    uint32_t options = rule.caseless() ? PCRE2_CASELESS : 0;
    int error = 0;
    PCRE2_SIZE offset = 0;
    c.code.reset(pcre2_compile(
        reinterpret_cast<PCRE2_SPTR>(rule.pattern().data()),
        rule.pattern().size(), options, &error, &offset, nullptr));
    if (!c.code) {
      return farm::Status::Invalid(where + "bad pattern at offset " +
                                   std::to_string(offset) + ": " +
                                   Pcre2Error(error));
    }
    // JIT makes matching several times faster; without it (unsupported CPU)
    // the interpreter is used, with the same limits.
    pcre2_jit_compile(c.code.get(), PCRE2_JIT_COMPLETE);
    c.match_data.reset(
        pcre2_match_data_create_from_pattern(c.code.get(), nullptr));
    if (rule.action() == mailfarm::config::FilterRule::ADD_HEADER) {
      auto header = ParseHeaderLine(rule.text());
      if (!header.ok())
        return farm::Status::Invalid(where + header.status().message());
      c.header = std::move(header.value());
    }
    set.rules_.push_back(std::move(c));
  }
  return set;
}

bool RuleSet::Matches(const Compiled& rule, std::string_view subject) const {
  int rc =
      pcre2_match(rule.code.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()),
                  subject.size(), 0, 0, rule.match_data.get(), context_.get());
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  LOG(WARNING) << "filter rule " << rule.name << ": " << Pcre2Error(rc)
               << "; counted as no match";
  return false;
}

RuleDecision RuleSet::Evaluate(const Message& message,
                               Deadline deadline) const {
  using Action = mailfarm::config::FilterRule;
  RuleDecision decision;
  bool timed_out = false;
  for (const Compiled& rule : rules_) {
    auto test = [&](std::string_view subject) {
      if (std::chrono::steady_clock::now() > deadline) {
        timed_out = true;
        return false;
      }
      return !Matches(rule, subject);  // false stops the walk: matched
    };
    bool walked_all;
    if (rule.rule.where() == Action::HEADER) {
      walked_all = true;
      std::string line;
      for (const HeaderField& h : message.headers) {
        line = h.name + ": " + h.value;
        if (!test(line)) {
          walked_all = false;
          break;
        }
      }
    } else {
      walked_all = ForEachBodyLine(message.body(), test);
    }
    if (timed_out) {
      decision.kind = RuleDecision::Kind::kTimeout;
      decision.rule = rule.name;
      return decision;
    }
    if (walked_all) continue;  // no line matched
    switch (rule.rule.action()) {
      case Action::ADD_HEADER:
        decision.add_headers.push_back(rule.header);
        continue;
      case Action::ACCEPT:
        decision.kind = RuleDecision::Kind::kAccept;
        break;
      case Action::REJECT:
        decision.kind = RuleDecision::Kind::kReject;
        break;
      case Action::DISCARD:
        decision.kind = RuleDecision::Kind::kDiscard;
        break;
      case Action::HOLD:
        decision.kind = RuleDecision::Kind::kHold;
        break;
    }
    decision.rule = rule.name;
    decision.text = rule.rule.text();
    return decision;
  }
  return decision;
}

}  // namespace filter
