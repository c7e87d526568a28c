// sasl_server.h: the SMTP AUTH back end an smtpd session talks to (RFC 4954).
// Production uses DovecotSasl (dovecot_sasl.h: Dovecot's auth service, as
// Postfix's smtpd_sasl_type = dovecot); unit tests use a scripted fake. The
// session relays base64 challenges and responses; mechanisms are the back
// end's business. Kept free of sockets so the protocol core builds without.
#ifndef MAILFARM_SMTPD_SASL_SERVER_H_
#define MAILFARM_SMTPD_SASL_SERVER_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace smtpd {

// What the auth service may know about the client (Dovecot logs it and may
// use it in its own policies).
struct SaslClientInfo {
  std::string remote_address;
  int remote_port = 0;
  bool secured = false;  // TLS is active
};

// One step of an exchange.
struct SaslStep {
  enum class Kind {
    kOk,        // authenticated as `user`
    kContinue,  // send `challenge` (base64) to the client in a 334 reply
    kFail,      // wrong credentials (535); `reason` may be shown
    kTempFail,  // the back end could not decide (454)
  };
  Kind kind = Kind::kTempFail;
  std::string challenge;
  std::string user;
  std::string reason;
};

// One exchange at a time. Not thread-safe.
class SaslServer {
 public:
  virtual ~SaslServer() = default;
  // The mechanisms to announce in EHLO ("PLAIN", "LOGIN"). An error means
  // the auth service is unreachable: AUTH is then not offered.
  virtual farm::StatusOr<std::vector<std::string>> Mechanisms() = 0;
  // Starts an exchange. `initial_response` is the client's base64 initial
  // response ("" for RFC 4954's "="), nullopt when none was given. An error
  // means the service failed mid-way (reply 454); the exchange is over.
  virtual farm::StatusOr<SaslStep> Start(
      std::string_view mechanism,
      const std::optional<std::string>& initial_response,
      const SaslClientInfo& client) = 0;
  // Answers the last kContinue with the client's base64 response.
  virtual farm::StatusOr<SaslStep> Continue(std::string_view response) = 0;
  // Abandons the exchange in progress (the client sent "*" or left).
  virtual void Cancel() = 0;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SASL_SERVER_H_
