// dovecot_sasl.h: SMTP AUTH through Dovecot's authentication service, the
// client side of Dovecot's auth protocol v1 (VERSION/CPID handshake, MECH
// list, AUTH/CONT/OK/FAIL), as Postfix speaks it with smtpd_sasl_type =
// dovecot. Each smtpd child owns one, connected on first use and kept
// across sessions; the line parsing is exposed for unit tests.
#ifndef MAILFARM_SMTPD_DOVECOT_SASL_H_
#define MAILFARM_SMTPD_DOVECOT_SASL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "smtpd/sasl_server.h"

namespace smtpd {

// Dovecot's tab-escaping of parameter values (\001 then 0, 1, t, r, n).
std::string DovecotUnescape(std::string_view value);

// One line from the auth service split at TABs; values unescaped.
std::vector<std::string> SplitDovecotLine(std::string_view line);

// Turns the answer to request `id` (an "OK", "CONT" or "FAIL" line, split)
// into a step. An error for a malformed line or another request's id.
farm::StatusOr<SaslStep> DovecotStep(const std::vector<std::string>& fields,
                                     uint32_t id);

// Not thread-safe; one per process (a forked child makes its own).
class DovecotSasl : public SaslServer {
 public:
  // `path`: the auth-client Unix socket, or "inet:HOST:PORT". Every
  // connect, write and read is bounded by `timeout_ms`.
  DovecotSasl(std::string path, int timeout_ms);

  farm::StatusOr<std::vector<std::string>> Mechanisms() override;
  farm::StatusOr<SaslStep> Start(
      std::string_view mechanism,
      const std::optional<std::string>& initial_response,
      const SaslClientInfo& client) override;
  farm::StatusOr<SaslStep> Continue(std::string_view response) override;
  void Cancel() override;

 private:
  // Connects and reads the server's handshake up to DONE (no-op when
  // connected).
  farm::Status EnsureConnected();
  farm::StatusOr<farm::UniqueFd> Connect() const;
  farm::Status SendLine(const std::string& line);
  farm::StatusOr<std::string> ReadLine();
  // Sends `line` and reads the answer to the current request.
  farm::StatusOr<SaslStep> Exchange(const std::string& line);
  // Forgets the connection (after an error or a cancelled exchange).
  void Drop();

  std::string path_;
  int timeout_ms_;
  farm::UniqueFd fd_;
  std::string in_;
  std::vector<std::string> mechanisms_;
  uint32_t next_id_ = 1;
  uint32_t current_id_ = 0;  // 0: no exchange in progress
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_DOVECOT_SASL_H_
