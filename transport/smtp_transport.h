// smtp_transport.h: the smtp channel's handler: resolves the job's nexthop,
// opens (or reuses) a session, runs the transaction and reports per-recipient
// outcomes. It keeps the session open after a job (up to the idle timeout and
// max messages per connection) and says so in Result.open_session, so the
// scheduler can send that destination's next job to this child. Created by
// transport/main.cc for type SMTP.
#ifndef MAILFARM_TRANSPORT_SMTP_TRANSPORT_H_
#define MAILFARM_TRANSPORT_SMTP_TRANSPORT_H_

#include <openssl/ssl.h>

#include <memory>
#include <random>
#include <string>

#include "config.pb.h"
#include "farm/job_server.h"
#include "transport/delivery.h"
#include "transport/mx_lookup.h"
#include "transport/smtp_session.h"

namespace transport {

// One per child; not thread-safe (the farm child is single-threaded).
class SmtpTransport : public farm::JobHandler {
 public:
  // `hostname` is this system's name (Received:) and the default EHLO name.
  SmtpTransport(const mailfarm::config::ChannelConfig& channel,
                std::string hostname);
  ~SmtpTransport() override;

  void Handle(const mailfarm::Job& job, mailfarm::Result* result) override;
  // Closes a session idle past idle_timeout_ms or closed by the server.
  void Idle() override;
  // The scheduler went away: its affinity is gone, so close the session.
  void ConnectionClosed() override;

 private:
  struct SslCtxFree {
    void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
  };
  // Delivers `job` (recipients of one destination) to `destination` (a
  // nexthop or a domain), adding its recipients to `result` and setting
  // open_session and connection_failure.
  void Deliver(const mailfarm::Job& job, const std::string& destination,
               mailfarm::Result* result);
  // Cuts the session's timeouts to the job's deadline (if any).
  void SetDeadline(const mailfarm::Job& job, int64_t now);
  // Makes session_ a live session to `key`: the open one after RSET, or a new
  // one (resolve, connect). False when none could be made: every recipient
  // is then reported and connection_failure set as fits.
  bool UseSession(const Nexthop& nexthop, const std::string& key,
                  int64_t started, DeliveryReport* report,
                  mailfarm::Result* result);
  // Opens a session to the first endpoint that works; nullptr with the
  // failure filled when none does.
  std::unique_ptr<SmtpSession> Connect(const Resolution& resolution,
                                       SessionFailure* failure);
  void CloseSession();

  std::string channel_name_;
  mailfarm::config::SmtpClientConfig config_;
  std::string hostname_;
  SessionSettings settings_;
  ResolverOptions resolver_options_;
  std::unique_ptr<SSL_CTX, SslCtxFree> ssl_ctx_;
  std::string ssl_error_;  // why ssl_ctx_ could not be made (TLS required)
  std::mt19937 rng_;

  std::unique_ptr<SmtpSession> session_;
  std::string session_key_;  // "<channel> <nexthop>"
  uint32_t session_messages_ = 0;
  int64_t session_last_used_ms_ = 0;
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_SMTP_TRANSPORT_H_
