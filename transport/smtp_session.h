// smtp_session.h: an RFC 5321 client session on one SmtpConnection: greeting,
// EHLO (HELO fallback), STARTTLS by policy, then mail transactions with
// PIPELINING, SIZE, 8BITMIME and SMTPUTF8, per-recipient outcomes, RSET for
// reuse and QUIT. Used by smtp_transport; blocking.
#ifndef MAILFARM_TRANSPORT_SMTP_SESSION_H_
#define MAILFARM_TRANSPORT_SMTP_SESSION_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "config.pb.h"
#include "transport/delivery.h"
#include "transport/mx_lookup.h"
#include "transport/smtp_connection.h"
#include "transport/smtp_reply.h"
#include "wire.pb.h"

namespace transport {

// Why a session could not be made with one endpoint.
struct SessionFailure {
  bool permanent = false;  // a 5xx greeting or HELO rejection
  bool tls_failed =
      false;  // the STARTTLS handshake failed (policy MAY may retry in clear)
  std::string dsn;
  std::string text;
};

// Settings of a session, from the channel's SmtpClientConfig.
struct SessionSettings {
  std::string helo_name;
  mailfarm::config::TlsClientPolicy::Level tls_level =
      mailfarm::config::TlsClientPolicy::MAY;
  SSL_CTX* ssl_ctx = nullptr;  // required unless tls_level is NONE; not owned
  int connect_timeout_ms = 30000;
  int greeting_timeout_ms = 300000;
  int command_timeout_ms = 300000;
  int data_init_timeout_ms = 120000;
  int data_block_timeout_ms = 180000;
  int data_done_timeout_ms = 600000;
  // Monotonic ms after which no wait may last (the job's deadline); 0: none.
  // Every timeout above is cut to what is left of it.
  int64_t deadline_ms = 0;
};

// Not thread-safe. Owns its connection.
class SmtpSession {
 public:
  // Connects to `endpoint` and runs greeting, EHLO and (unless `allow_tls` is
  // false) STARTTLS as the policy asks. nullptr with *failure filled when no
  // usable session results.
  static std::unique_ptr<SmtpSession> Open(const Endpoint& endpoint,
                                           const SessionSettings& settings,
                                           bool allow_tls,
                                           SessionFailure* failure);

  // One mail transaction for `job` with `prefix` written before the message.
  // Fills one outcome per job recipient, in job order. After it, usable()
  // says whether RSET and another transaction may follow.
  std::vector<RecipientOutcome> Send(const mailfarm::Job& job,
                                     const std::string& prefix,
                                     const MessageReader& message);

  // RSET before reusing the session; false (and unusable) when it fails.
  bool Reset();
  // QUIT (best effort, short timeout); the session is unusable afterwards.
  void Quit();
  // The deadline of the next job on a reused session (see SessionSettings).
  void SetDeadline(int64_t deadline_ms) { settings_.deadline_ms = deadline_ms; }
  // False once the connection failed or the server said 421.
  bool usable() const { return usable_; }
  // Whether the idle server closed the connection or spoke out of turn.
  bool Stale() { return connection_->PeerClosedOrSpoke(); }

  const Endpoint& endpoint() const { return connection_->endpoint(); }
  std::string relay() const { return endpoint().Describe(); }
  const EhloCapabilities& capabilities() const { return caps_; }

 private:
  SmtpSession(std::unique_ptr<SmtpConnection> connection,
              const SessionSettings& settings)
      : connection_(std::move(connection)), settings_(settings) {}
  // greeting, EHLO/HELO, STARTTLS; false with *failure filled.
  bool Handshake(bool allow_tls, SessionFailure* failure);
  bool Ehlo(SessionFailure* failure);
  // Reads a reply; on an I/O failure fills *lost with why and marks unusable.
  bool Read(int timeout_ms, const char* stage, SmtpReply* reply,
            std::string* lost);
  bool Flush(int timeout_ms, const char* stage, std::string* lost);
  // `timeout_ms` cut to what is left before the deadline (at least 1 ms).
  int Budget(int timeout_ms) const;
  // "host X said: 550 ... (in reply to RCPT TO command)"
  std::string Said(const SmtpReply& reply, const char* command) const;
  struct Transaction;  // per-recipient state of one Send
  // Settles the pending recipients as deferred by `lost`; returns false.
  bool Lost(Transaction* t, const std::string& lost);
  void RcptReply(int index, const SmtpReply& reply, Transaction* t);
  // Refuses what cannot be sent (control characters, SMTPUTF8, SIZE) before
  // MAIL; false when nothing is left to send.
  bool Precheck(const mailfarm::Job& job, uint64_t size, Transaction* t);
  std::string MailCommand(const mailfarm::Job& job, uint64_t size) const;
  // MAIL (already queued), RCPT, DATA: one command at a time or pipelined.
  // True with *data_reply set when DATA was sent for an accepted recipient;
  // false when every recipient is settled.
  bool EnvelopeStepwise(const mailfarm::Job& job, Transaction* t,
                        SmtpReply* data_reply);
  bool EnvelopePipelined(const mailfarm::Job& job, Transaction* t,
                         SmtpReply* data_reply);
  // Writes the dot-stuffed message; false with *lost filled on failure.
  bool SendBody(const std::string& prefix, const MessageReader& message,
                std::string* lost);

  std::unique_ptr<SmtpConnection> connection_;
  SessionSettings settings_;
  EhloCapabilities caps_;
  bool esmtp_ = true;
  bool usable_ = true;
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_SMTP_SESSION_H_
