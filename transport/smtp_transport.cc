// smtp_transport.cc: destination resolution, session reuse and reporting for
// the smtp channel (see smtp_transport.h).
#include "transport/smtp_transport.h"

#include <glog/logging.h>
#include <openssl/err.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <vector>

#include "farm/clock.h"
#include "farm/config.h"
#include "transport/delivery.h"
#include "transport/template.h"

namespace transport {

namespace {

int64_t Now() { return farm::RealClock()->MonotonicMs(); }

std::string OpenSslError() {
  char buf[256] = "";
  unsigned long err = ERR_get_error();
  if (err != 0) ERR_error_string_n(err, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

int Ms(uint32_t value) { return static_cast<int>(value); }

}  // namespace

SmtpTransport::SmtpTransport(const mailfarm::config::ChannelConfig& channel,
                             std::string hostname)
    : channel_name_(channel.name()),
      config_(channel.smtp()),
      hostname_(std::move(hostname)),
      rng_(static_cast<unsigned>(::getpid() ^ Now())) {
  using Level = mailfarm::config::TlsClientPolicy;
  settings_.helo_name =
      config_.has_helo_name() ? config_.helo_name() : hostname_;
  settings_.tls_level = config_.tls().level();
  settings_.connect_timeout_ms = Ms(config_.connect_timeout_ms());
  settings_.greeting_timeout_ms = Ms(config_.greeting_timeout_ms());
  settings_.command_timeout_ms = Ms(config_.command_timeout_ms());
  settings_.data_init_timeout_ms = Ms(config_.data_init_timeout_ms());
  settings_.data_block_timeout_ms = Ms(config_.data_block_timeout_ms());
  settings_.data_done_timeout_ms = Ms(config_.data_done_timeout_ms());
  resolver_options_.default_port = static_cast<int>(config_.default_port());
  for (const std::string& server : config_.dns_servers()) {
    resolver_options_.dns_servers.push_back(server);
  }
  // OpenSSL writes to the socket with write(2): a peer that hung up must give
  // EPIPE, not kill the child. (The farm ignores SIGPIPE too; be explicit.)
  ::signal(SIGPIPE, SIG_IGN);
  if (settings_.tls_level == Level::NONE) return;
  ssl_ctx_.reset(SSL_CTX_new(TLS_client_method()));
  // TLS 1.2 at least, whatever OpenSSL's configuration (a lowered security
  // level for some legacy peer) would allow; smtpd has the same floor.
  if (ssl_ctx_ &&
      SSL_CTX_set_min_proto_version(ssl_ctx_.get(), TLS1_2_VERSION) != 1) {
    ssl_error_ = "cannot set TLS 1.2 as the minimum: " + OpenSslError();
    ssl_ctx_.reset();
  }
  if (!ssl_ctx_) {
    if (ssl_error_.empty())
      ssl_error_ = "cannot create a TLS context: " + OpenSslError();
  } else if (settings_.tls_level == Level::VERIFY) {
    const std::string& ca = config_.tls().ca_file();
    int ok = ca.empty()
                 ? SSL_CTX_set_default_verify_paths(ssl_ctx_.get())
                 : SSL_CTX_load_verify_locations(
                       ssl_ctx_.get(), farm::ResolvePath(ca).c_str(), nullptr);
    if (ok != 1) {
      ssl_error_ = "cannot load CA certificates " +
                   (ca.empty() ? std::string("(system default)") : ca) + ": " +
                   OpenSslError();
      ssl_ctx_.reset();
    }
  }
  if (!ssl_error_.empty()) {
    LOG(ERROR) << "channel " << channel_name_ << ": " << ssl_error_;
    if (settings_.tls_level == Level::MAY) {
      settings_.tls_level = Level::NONE;  // opportunistic: go without
    }
  }
  // The peer is verified after the handshake (SmtpConnection::StartTls), so
  // a failure yields a precise reason instead of an alert.
  if (ssl_ctx_) SSL_CTX_set_verify(ssl_ctx_.get(), SSL_VERIFY_NONE, nullptr);
  settings_.ssl_ctx = ssl_ctx_.get();
}

SmtpTransport::~SmtpTransport() { CloseSession(); }

void SmtpTransport::CloseSession() {
  if (session_) {
    session_->Quit();
    session_.reset();
  }
  session_key_.clear();
  session_messages_ = 0;
}

std::unique_ptr<SmtpSession> SmtpTransport::Connect(
    const Resolution& resolution, SessionFailure* failure) {
  bool all_permanent = true;
  for (const Endpoint& endpoint : resolution.endpoints) {
    SessionFailure attempt;
    auto session = SmtpSession::Open(endpoint, settings_, true, &attempt);
    if (!session && attempt.tls_failed &&
        settings_.tls_level == mailfarm::config::TlsClientPolicy::MAY) {
      LOG(WARNING) << attempt.text << "; trying again without TLS";
      session = SmtpSession::Open(endpoint, settings_, false, &attempt);
    }
    if (session) return session;
    LOG(WARNING) << attempt.text;
    all_permanent &= attempt.permanent;
    *failure = attempt;
  }
  failure->permanent = all_permanent && !resolution.endpoints.empty();
  return nullptr;
}

void SmtpTransport::Handle(const mailfarm::Job& job, mailfarm::Result* result) {
  if (!job.nexthop().empty()) {
    Deliver(job, job.nexthop(), result);
    DeliveryReport::Finish(result);
    return;
  }
  // No nexthop: the route said "MX of the recipient's domain", and one job may
  // hold recipients of several domains. One transaction per domain, in the
  // order the domains first appear.
  std::vector<std::string> order;
  std::map<std::string, mailfarm::Job> parts;
  for (const mailfarm::JobRecipient& recipient : job.recipients()) {
    std::string domain = SplitAddress(recipient.address()).domain;
    std::transform(domain.begin(), domain.end(), domain.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    auto [it, inserted] = parts.try_emplace(domain);
    if (inserted) {
      order.push_back(domain);
      it->second = job;
      it->second.clear_recipients();
    }
    *it->second.add_recipients() = recipient;
  }
  bool all_failed = !order.empty();
  for (const std::string& domain : order) {
    result->set_connection_failure(false);
    Deliver(parts[domain], domain, result);
    all_failed &= result->connection_failure();
  }
  result->set_connection_failure(all_failed);
  DeliveryReport::Finish(result);
}

void SmtpTransport::Deliver(const mailfarm::Job& job,
                            const std::string& destination,
                            mailfarm::Result* result) {
  DeliveryReport report(job, result);
  result->clear_open_session();  // only the session left open at the end counts
  auto message = MessageReader::Open(job);
  if (!message.ok()) {
    report.AddAll(mailfarm::OUTCOME_TEMPFAIL, "4.3.0",
                  message.status().message(), "none");
    return;
  }
  auto nexthop = ParseNexthop(destination);
  if (!nexthop.ok()) {
    bool routed = !job.nexthop().empty();
    report.AddAll(
        routed ? mailfarm::OUTCOME_TEMPFAIL : mailfarm::OUTCOME_PERMFAIL,
        routed ? "4.3.5" : "5.1.2",
        routed ? "bad nexthop: " + nexthop.status().message()
               : "recipient address has no domain",
        "none");
    return;
  }
  if (settings_.tls_level != mailfarm::config::TlsClientPolicy::NONE &&
      !ssl_ctx_) {
    report.AddAll(mailfarm::OUTCOME_TEMPFAIL, "4.7.5", ssl_error_, "none");
    return;
  }
  const std::string key = channel_name_ + " " + destination;
  const int64_t started = Now();
  SetDeadline(job, started);
  if (!UseSession(*nexthop, key, started, &report, result)) return;
  const int64_t ready = Now();
  std::string prefix =
      MessagePrefix(job, hostname_, TraceKind::kRelay, nullptr);
  std::vector<RecipientOutcome> outcomes =
      session_->Send(job, prefix, *message);
  ++session_messages_;
  session_last_used_ms_ = Now();
  report.SetTimes(ready - started, session_last_used_ms_ - ready);
  const std::string relay = session_->relay();
  for (int i = 0; i < job.recipients_size(); ++i) {
    report.Add(job.recipients(i), outcomes[i].outcome, outcomes[i].dsn,
               outcomes[i].text, relay);
  }
  if (session_->usable() &&
      session_messages_ < config_.max_messages_per_connection()) {
    result->set_open_session(key);
  } else {
    CloseSession();
  }
}

void SmtpTransport::SetDeadline(const mailfarm::Job& job, int64_t now) {
  // The scheduler aborts a job past its deadline; give up a little before,
  // with a reason, rather than be killed mid-conversation.
  settings_.deadline_ms = 0;
  if (job.deadline_unix_ms() > 0) {
    int64_t left = job.deadline_unix_ms() - farm::RealClock()->NowUnixMs();
    settings_.deadline_ms = now + std::max<int64_t>(left, 1000);
  }
  if (session_) session_->SetDeadline(settings_.deadline_ms);
}

bool SmtpTransport::UseSession(const Nexthop& nexthop, const std::string& key,
                               int64_t started, DeliveryReport* report,
                               mailfarm::Result* result) {
  if (session_ &&
      (key != session_key_ || session_->Stale() || !session_->Reset())) {
    CloseSession();
  }
  if (session_) return true;
  Resolution resolution = Resolve(nexthop, resolver_options_, &rng_);
  if (!resolution.status.ok()) {
    bool temporary = resolution.status.code() == farm::Status::Code::kTempFail;
    report->AddAll(
        temporary ? mailfarm::OUTCOME_TEMPFAIL : mailfarm::OUTCOME_PERMFAIL,
        resolution.dsn, resolution.status.message(), "none");
    result->set_connection_failure(temporary);
    return false;
  }
  SessionFailure failure;
  session_ = Connect(resolution, &failure);
  if (!session_) {
    report->SetTimes(Now() - started, 0);
    report->AddAll(failure.permanent ? mailfarm::OUTCOME_PERMFAIL
                                     : mailfarm::OUTCOME_TEMPFAIL,
                   failure.dsn, failure.text, "none");
    result->set_connection_failure(true);
    return false;
  }
  session_key_ = key;
  session_messages_ = 0;
  return true;
}

void SmtpTransport::Idle() {
  if (!session_) return;
  if (Now() - session_last_used_ms_ >= config_.idle_timeout_ms() ||
      session_->Stale()) {
    CloseSession();
  }
}

void SmtpTransport::ConnectionClosed() { CloseSession(); }

}  // namespace transport
