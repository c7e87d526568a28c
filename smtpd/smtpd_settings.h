// smtpd_settings.h: mailfarm-smtpd's view of mailfarm.conf, checked once in the
// manager: session limits and relay policy, listeners (with their PROXY flag),
// the TLS context, the inject socket. A bad setting is a config error (exit
// 78).
#ifndef MAILFARM_SMTPD_SMTPD_SETTINGS_H_
#define MAILFARM_SMTPD_SMTPD_SETTINGS_H_

#include <memory>
#include <string>
#include <vector>

#include "farm/config.h"
#include "farm/status.h"
#include "smtpd/anvil.h"
#include "smtpd/session.h"
#include "smtpd/socket_transport.h"

namespace smtpd {

// What a listener serves (config Listener.mode).
enum class ListenerMode { kSmtp, kSubmission, kSubmissions };

struct ListenerSettings {
  std::string address;
  int port = 0;
  bool proxy_protocol = false;
  ListenerMode mode = ListenerMode::kSmtp;
};

// The session options of a connection that arrived on `listener`: `base`
// (SmtpdSettings::session or proxy_session) with the listener mode's
// submission policy.
SessionOptions OptionsForListener(const SessionOptions& base,
                                  const ListenerSettings& listener);

struct SmtpdSettings {
  SessionOptions session;        // for listeners without PROXY protocol
  SessionOptions proxy_session;  // the same, with proxy_protocol = true
  std::vector<ListenerSettings> listeners;
  std::shared_ptr<TlsServerContext> tls;  // null: no STARTTLS
  std::string inject_socket;
  size_t max_frame_bytes = 1 << 20;
  int inject_timeout_ms = 120000;
  AnvilLimits anvil;      // per-client limits
  std::string sasl_path;  // Dovecot auth service; empty: no AUTH anywhere
  int sasl_timeout_ms = 30000;
};

// Builds and checks the settings. Refuses what would make an open relay (a
// trusted network of prefix length 0), malformed networks, a PROXY listener
// with no proxy_networks, a certificate without key (or the reverse), and
// certificate/key files that do not load. `tls_key_fd` (>= 0): the key as
// mailfarmd read it before dropping root, used instead of tls_key_file.
farm::StatusOr<std::shared_ptr<const SmtpdSettings>> BuildSettings(
    const farm::Config& config, int tls_key_fd = -1);

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_SMTPD_SETTINGS_H_
