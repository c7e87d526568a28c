// smtp_session.cc: the SMTP client protocol (see smtp_session.h).
#include "transport/smtp_session.h"

#include <glog/logging.h>

#include <algorithm>

#include "farm/clock.h"
#include "transport/line_encoder.h"

namespace transport {

namespace {

constexpr size_t kBodyWriteBytes = 64 * 1024;
constexpr int kQuitTimeoutMs = 2000;

mailfarm::Outcome OutcomeOf(const SmtpReply& reply) {
  if (reply.Class() == 2) return mailfarm::OUTCOME_OK;
  if (reply.Class() == 5) return mailfarm::OUTCOME_PERMFAIL;
  return mailfarm::OUTCOME_TEMPFAIL;
}

int ClampToDeadline(int timeout_ms, int64_t deadline_ms) {
  if (deadline_ms == 0) return timeout_ms;
  int64_t left = deadline_ms - farm::RealClock()->MonotonicMs();
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(timeout_ms, left)));
}

bool HasControl(const std::string& text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

std::unique_ptr<SmtpSession> SmtpSession::Open(const Endpoint& endpoint,
                                               const SessionSettings& settings,
                                               bool allow_tls,
                                               SessionFailure* failure) {
  auto connection = SmtpConnection::Connect(
      endpoint,
      ClampToDeadline(settings.connect_timeout_ms, settings.deadline_ms));
  if (!connection.ok()) {
    *failure =
        SessionFailure{false, false, "4.4.1", connection.status().message()};
    return nullptr;
  }
  // The constructor is private (sessions come only from Open).
  std::unique_ptr<SmtpSession> session(
      new SmtpSession(std::move(*connection), settings));
  if (!session->Handshake(allow_tls, failure)) return nullptr;
  return session;
}

int SmtpSession::Budget(int timeout_ms) const {
  return ClampToDeadline(timeout_ms, settings_.deadline_ms);
}

bool SmtpSession::Read(int timeout_ms, const char* stage, SmtpReply* reply,
                       std::string* lost) {
  farm::Status s = connection_->ReadReply(Budget(timeout_ms), reply);
  if (s.ok()) {
    if (reply->code == 421) usable_ = false;  // the server is closing
    return true;
  }
  usable_ = false;
  switch (s.code()) {
    case farm::Status::Code::kTempFail:
      *lost = "conversation with " + relay() + " timed out while " + stage;
      break;
    case farm::Status::Code::kClosed:
      *lost = "lost connection with " + relay() + " while " + stage;
      break;
    case farm::Status::Code::kInvalid:
      *lost = "malformed reply from " + relay() + " while " + stage + ": " +
              s.message();
      break;
    default:
      *lost = "error talking to " + relay() + " while " + stage + ": " +
              s.message();
      break;
  }
  return false;
}

bool SmtpSession::Flush(int timeout_ms, const char* stage, std::string* lost) {
  farm::Status s = connection_->Flush(Budget(timeout_ms));
  if (s.ok()) return true;
  usable_ = false;
  if (s.code() == farm::Status::Code::kTempFail) {
    *lost = "conversation with " + relay() + " timed out while " + stage;
  } else {
    *lost = "lost connection with " + relay() + " while " + stage + " (" +
            s.message() + ")";
  }
  return false;
}

std::string SmtpSession::Said(const SmtpReply& reply,
                              const char* command) const {
  return "host " + endpoint().host + "[" + endpoint().address_text +
         "] said: " + reply.Text() + " (in reply to " + command + " command)";
}

bool SmtpSession::Ehlo(SessionFailure* failure) {
  std::string lost;
  SmtpReply reply;
  connection_->Queue("EHLO " + settings_.helo_name + "\r\n");
  if (!Flush(settings_.command_timeout_ms, "sending EHLO", &lost) ||
      !Read(settings_.command_timeout_ms, "performing the EHLO handshake",
            &reply, &lost)) {
    *failure = SessionFailure{false, false, "4.4.2", lost};
    return false;
  }
  if (reply.Class() == 2) {
    caps_ = ParseEhlo(reply);
    esmtp_ = true;
    return true;
  }
  const char* command = "EHLO";
  if (reply.Class() == 5) {
    // An old server without ESMTP: plain HELO, no extensions.
    connection_->Queue("HELO " + settings_.helo_name + "\r\n");
    if (!Flush(settings_.command_timeout_ms, "sending HELO", &lost) ||
        !Read(settings_.command_timeout_ms, "performing the HELO handshake",
              &reply, &lost)) {
      *failure = SessionFailure{false, false, "4.4.2", lost};
      return false;
    }
    if (reply.Class() == 2) {
      caps_ = EhloCapabilities();
      esmtp_ = false;
      return true;
    }
    command = "HELO";
  }
  *failure = SessionFailure{reply.Class() == 5, false, reply.Dsn(),
                            Said(reply, command)};
  Quit();
  return false;
}

bool SmtpSession::Handshake(bool allow_tls, SessionFailure* failure) {
  using Level = mailfarm::config::TlsClientPolicy;
  std::string lost;
  SmtpReply reply;
  if (!Read(settings_.greeting_timeout_ms,
            "receiving the initial server greeting", &reply, &lost)) {
    *failure = SessionFailure{false, false, "4.4.2", lost};
    return false;
  }
  if (reply.Class() != 2) {
    *failure = SessionFailure{
        reply.Class() == 5, false, reply.Dsn(),
        "host " + relay() + " refused to talk to me: " + reply.Text()};
    Quit();
    return false;
  }
  if (!Ehlo(failure)) return false;
  const auto level = settings_.tls_level;
  if (level == Level::NONE || !allow_tls) return true;
  const bool required = level == Level::ENCRYPT || level == Level::VERIFY;
  if (!caps_.starttls) {
    if (!required) return true;
    *failure = SessionFailure{
        false, false, "4.7.4",
        "TLS is required, but was not offered by host " + relay()};
    Quit();
    return false;
  }
  connection_->Queue("STARTTLS\r\n");
  if (!Flush(settings_.command_timeout_ms, "sending STARTTLS", &lost) ||
      !Read(settings_.command_timeout_ms, "sending STARTTLS", &reply, &lost)) {
    *failure = SessionFailure{false, false, "4.4.2", lost};
    return false;
  }
  if (reply.code != 220) {
    if (!required) return true;  // RFC 3207: may continue without TLS
    *failure =
        SessionFailure{false, false, "4.7.4",
                       "TLS is required, but " + Said(reply, "STARTTLS")};
    Quit();
    return false;
  }
  TlsCheck check;
  check.sni = endpoint().host;
  check.verify_name = endpoint().host;
  check.verify = level == Level::VERIFY;
  farm::Status tls = connection_->StartTls(
      settings_.ssl_ctx, check, Budget(settings_.command_timeout_ms));
  if (!tls.ok()) {
    usable_ = false;
    *failure =
        SessionFailure{false, true, "4.7.5",
                       "TLS with " + relay() + " failed: " + tls.message()};
    return false;
  }
  LOG(INFO) << (check.verify ? "Verified" : "Untrusted")
            << " TLS connection established to " << relay() << ": "
            << connection_->TlsDescription();
  // RFC 3207 4.2: forget what the server said before TLS; ask again.
  return Ehlo(failure);
}

bool SmtpSession::SendBody(const std::string& prefix,
                           const MessageReader& message, std::string* lost) {
  LineEncoder encoder(LineEncoder::Mode::kSmtpData);
  std::string* out = connection_->mutable_output();
  encoder.Feed(prefix, out);
  bool network_failed = false;
  farm::Status s =
      message.ForEachChunk([&](std::string_view chunk) -> farm::Status {
        encoder.Feed(chunk, out);
        if (out->size() < kBodyWriteBytes) return farm::Status::Ok();
        if (!Flush(settings_.data_block_timeout_ms, "sending message body",
                   lost)) {
          network_failed = true;
          return farm::Status::Error(*lost);
        }
        return farm::Status::Ok();
      });
  if (!s.ok()) {
    if (!network_failed) {
      // Never end the DATA of a message we could not read: drop the connection
      // so that the server discards the partial message.
      usable_ = false;
      *lost = s.message();
    }
    return false;
  }
  encoder.Finish(out);
  return Flush(settings_.data_block_timeout_ms, "sending message body", lost);
}

// Per-recipient state of one mail transaction.
struct SmtpSession::Transaction {
  explicit Transaction(int n) : out(n), settled(n, false) {}
  void Settle(int i, mailfarm::Outcome outcome, const std::string& dsn,
              const std::string& text) {
    out[i] = RecipientOutcome{outcome, dsn, text};
    settled[i] = true;
  }
  // Gives every recipient without an outcome yet this one.
  void SettlePending(mailfarm::Outcome outcome, const std::string& dsn,
                     const std::string& text) {
    for (size_t i = 0; i < out.size(); ++i) {
      if (!settled[i]) Settle(static_cast<int>(i), outcome, dsn, text);
    }
  }
  std::vector<RecipientOutcome> out;
  std::vector<bool> settled;
  int accepted = 0;  // RCPT accepted, waiting for the end of DATA
};

bool SmtpSession::Lost(Transaction* t, const std::string& lost) {
  t->SettlePending(mailfarm::OUTCOME_TEMPFAIL, "4.4.2", lost);
  return false;
}

void SmtpSession::RcptReply(int i, const SmtpReply& reply, Transaction* t) {
  if (reply.Class() == 2) {
    ++t->accepted;
  } else {
    t->Settle(i, OutcomeOf(reply), reply.Dsn(), Said(reply, "RCPT TO"));
  }
}

bool SmtpSession::Precheck(const mailfarm::Job& job, uint64_t size,
                           Transaction* t) {
  // An address with CR, LF or other controls would smuggle commands into the
  // session: refuse it here whatever the front end let through.
  if (HasControl(job.sender())) {
    t->SettlePending(mailfarm::OUTCOME_PERMFAIL, "5.1.7",
                     "sender address contains control characters");
    return false;
  }
  int sendable = 0;
  for (int i = 0; i < job.recipients_size(); ++i) {
    if (HasControl(job.recipients(i).address())) {
      t->Settle(i, mailfarm::OUTCOME_PERMFAIL, "5.1.3",
                "recipient address contains control characters");
    } else {
      ++sendable;
    }
  }
  if (sendable == 0) return false;
  if (job.smtputf8() && !caps_.smtputf8) {
    t->SettlePending(
        mailfarm::OUTCOME_PERMFAIL, "5.6.7",
        "SMTPUTF8 is required, but was not offered by host " + relay());
    return false;
  }
  if (caps_.size && caps_.size_limit > 0 && size > caps_.size_limit) {
    t->SettlePending(
        mailfarm::OUTCOME_PERMFAIL, "5.3.4",
        "message size " + std::to_string(size) + " exceeds size limit " +
            std::to_string(caps_.size_limit) + " of server " + relay());
    return false;
  }
  return true;
}

std::string SmtpSession::MailCommand(const mailfarm::Job& job,
                                     uint64_t size) const {
  std::string mail = "MAIL FROM:<" + job.sender() + ">";
  if (caps_.size) mail += " SIZE=" + std::to_string(size);
  if (job.eight_bit() && caps_.eightbitmime) mail += " BODY=8BITMIME";
  if (job.smtputf8()) mail += " SMTPUTF8";
  return mail + "\r\n";
}

bool SmtpSession::EnvelopeStepwise(const mailfarm::Job& job, Transaction* t,
                                   SmtpReply* data_reply) {
  const int cmd_ms = settings_.command_timeout_ms;
  std::string lost;
  SmtpReply reply;
  if (!Flush(cmd_ms, "sending MAIL FROM", &lost) ||
      !Read(cmd_ms, "sending MAIL FROM", &reply, &lost)) {
    return Lost(t, lost);
  }
  if (reply.Class() != 2) {
    t->SettlePending(OutcomeOf(reply), reply.Dsn(), Said(reply, "MAIL FROM"));
    return false;
  }
  for (int i = 0; i < job.recipients_size(); ++i) {
    if (t->settled[i]) continue;  // refused by Precheck, never sent
    connection_->Queue("RCPT TO:<" + job.recipients(i).address() + ">\r\n");
    if (!Flush(cmd_ms, "sending RCPT TO", &lost) ||
        !Read(cmd_ms, "sending RCPT TO", &reply, &lost)) {
      return Lost(t, lost);
    }
    RcptReply(i, reply, t);
  }
  if (t->accepted == 0) return false;
  connection_->Queue("DATA\r\n");
  if (!Flush(cmd_ms, "sending DATA command", &lost) ||
      !Read(settings_.data_init_timeout_ms, "sending DATA command", data_reply,
            &lost)) {
    return Lost(t, lost);
  }
  return true;
}

bool SmtpSession::EnvelopePipelined(const mailfarm::Job& job, Transaction* t,
                                    SmtpReply* data_reply) {
  // RFC 2920: MAIL, every RCPT and DATA go out as one write; the replies are
  // then read in order.
  const int cmd_ms = settings_.command_timeout_ms;
  std::vector<int> sent;
  for (int i = 0; i < job.recipients_size(); ++i) {
    if (t->settled[i]) continue;
    connection_->Queue("RCPT TO:<" + job.recipients(i).address() + ">\r\n");
    sent.push_back(i);
  }
  connection_->Queue("DATA\r\n");
  std::string lost;
  SmtpReply mail_reply;
  SmtpReply reply;
  if (!Flush(cmd_ms, "sending MAIL FROM", &lost) ||
      !Read(cmd_ms, "sending MAIL FROM", &mail_reply, &lost)) {
    return Lost(t, lost);
  }
  for (int i : sent) {
    if (!Read(cmd_ms, "sending RCPT TO", &reply, &lost)) return Lost(t, lost);
    if (mail_reply.Class() == 2) RcptReply(i, reply, t);
  }
  if (!Read(settings_.data_init_timeout_ms, "sending DATA command", data_reply,
            &lost)) {
    return Lost(t, lost);
  }
  if (mail_reply.Class() != 2) {
    t->SettlePending(OutcomeOf(mail_reply), mail_reply.Dsn(),
                     Said(mail_reply, "MAIL FROM"));
  }
  if (t->accepted > 0) return true;
  if (data_reply->code == 354) {
    // RFC 2920 3.1: the server took DATA with no valid recipient; send an
    // empty message to end it and forget its reply (RSET follows).
    connection_->Queue(".\r\n");
    if (!Flush(cmd_ms, "ending an empty DATA", &lost) ||
        !Read(settings_.data_done_timeout_ms, "ending an empty DATA", &reply,
              &lost)) {
      usable_ = false;
    }
  }
  return false;
}

std::vector<RecipientOutcome> SmtpSession::Send(const mailfarm::Job& job,
                                                const std::string& prefix,
                                                const MessageReader& message) {
  Transaction t(job.recipients_size());
  const uint64_t size = prefix.size() + message.size();
  if (!Precheck(job, size, &t)) return t.out;
  connection_->Queue(MailCommand(job, size));
  SmtpReply reply;
  bool go = esmtp_ && caps_.pipelining ? EnvelopePipelined(job, &t, &reply)
                                       : EnvelopeStepwise(job, &t, &reply);
  if (!go) return t.out;
  if (reply.code != 354) {
    // A 2xx to DATA is a protocol error, not a delivery.
    t.SettlePending(
        OutcomeOf(reply) == mailfarm::OUTCOME_OK ? mailfarm::OUTCOME_TEMPFAIL
                                                 : OutcomeOf(reply),
        reply.Class() == 2 ? "4.5.0" : reply.Dsn(), Said(reply, "DATA"));
    return t.out;
  }
  std::string lost;
  if (!SendBody(prefix, message, &lost) ||
      !Read(settings_.data_done_timeout_ms,
            "sending end of data -- message may be sent more than once", &reply,
            &lost)) {
    Lost(&t, lost);
    return t.out;
  }
  if (reply.Class() == 2) {
    t.SettlePending(mailfarm::OUTCOME_OK, reply.Dsn(), reply.Text());
  } else {
    t.SettlePending(OutcomeOf(reply), reply.Dsn(), Said(reply, "end of DATA"));
  }
  return t.out;
}

bool SmtpSession::Reset() {
  if (!usable_) return false;
  std::string lost;
  SmtpReply reply;
  connection_->Queue("RSET\r\n");
  if (!Flush(settings_.command_timeout_ms, "sending RSET", &lost) ||
      !Read(settings_.command_timeout_ms, "sending RSET", &reply, &lost)) {
    return false;
  }
  if (reply.Class() != 2) usable_ = false;
  return usable_;
}

void SmtpSession::Quit() {
  if (usable_) {
    std::string lost;
    SmtpReply reply;
    connection_->Queue("QUIT\r\n");
    if (Flush(kQuitTimeoutMs, "sending QUIT", &lost)) {
      Read(kQuitTimeoutMs, "sending QUIT", &reply, &lost);
    }
  }
  usable_ = false;
}

}  // namespace transport
