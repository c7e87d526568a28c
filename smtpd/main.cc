// main.cc: mailfarm-smtpd, the SMTP front end. Binds the configured TCP
// listeners and runs a preforked farm whose children each serve one SMTP
// session at a time (smtpd_handler.cc); mailfarmd starts it.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <memory>

#include "farm/farm_manager.h"
#include "farm/inherited_key.h"
#include "farm/program.h"
#include "farm/sockets.h"
#include "smtpd/smtpd_handler.h"
#include "smtpd/smtpd_settings.h"

namespace {

const char kHelp[] = R"(NAME
    mailfarm-smtpd - the SMTP front end of mailfarm, a preforked farm

SYNOPSIS
    mailfarm-smtpd --config FILE

DESCRIPTION
    Binds the TCP listeners of the config's smtpd.listen entries (IPv4 and
    IPv6 literals; default 127.0.0.1:2525) and runs a preforked farm named
    "smtpd" (pool settings from smtpd.farm). Each child accepts a connection
    and serves one RFC 5321 session at a time: EHLO/HELO, MAIL, RCPT, DATA,
    RSET, NOOP, QUIT, HELP, VRFY, with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
    ENHANCEDSTATUSCODES and STARTTLS (when smtpd.tls_cert_file and
    smtpd.tls_key_file are set).

    Every message is streamed to mailfarm-scheduler over inject.sock while it
    arrives; "250 Ok: queued as QID" is sent only after the scheduler's durable
    acknowledgement. A scheduler tempfail or an unreachable scheduler gives 451.

    Relay control: recipients in routing.local_domains and routing.relay_domains
    are accepted from anyone; other recipients only from smtpd.trusted_networks
    (CIDR, IPv4 and IPv6); otherwise "554 5.7.1 Relay access denied". A /0
    trusted network is refused as a configuration error.

    Listeners with proxy_protocol: true expect a HAProxy PROXY v1 or v2 header,
    accepted only from smtpd.proxy_networks; the client address it carries is
    used for relay control and the Received: header.

    A listener's mode SUBMISSION (port 587) requires STARTTLS before AUTH and
    MAIL and AUTH before MAIL; SUBMISSIONS (port 465) starts TLS before the
    banner and requires AUTH. AUTH PLAIN/LOGIN (whatever Dovecot offers) is
    checked by Dovecot's auth service at smtpd.sasl_path; authenticated
    clients may relay.

    Per-client limits shared by all children (Postfix's anvil): concurrent
    sessions (default half of max_children), connection, message and
    recipient rates; over a limit "421 4.7.0" at connect or "450 4.7.1" at
    MAIL/RCPT. Idle clients get a short timeout while the farm is near
    max_children; every session ends after smtpd.max_session_ms.

    SIGHUP re-reads the config (not the listeners) and restarts the children
    gracefully; SIGTERM stops the farm. Usually started by mailfarmd.

OPTIONS
    --config FILE   the mailfarm.conf to use (default /etc/mailfarm/mailfarm.conf)
    --help          this text

EXIT STATUS
    0 after an orderly stop; 71 when a listener cannot be bound; 73 when the
    scoreboard cannot be created; 78 on a configuration error.

FILES
    run_dir/inject.sock         the scheduler's injection socket
    run_dir/smtpd.scoreboard    the farm's scoreboard (mailfarmctl farm status)
)";

}  // namespace

int main(int argc, char** argv) {
  farm::InitProgram(&argc, &argv, kHelp);
  farm::Config config = farm::LoadConfigOrDie();
  // The TLS key as mailfarmd read it before dropping root (so the key file
  // may stay root-only); kept for every reload.
  farm::UniqueFd tls_key = farm::TakeInheritedKey();
  auto settings = smtpd::BuildSettings(config, tls_key.get());
  if (!settings.ok()) {
    LOG(ERROR) << FLAGS_config << ": " << settings.status().message();
    return farm::kExitConfig;
  }
  farm::FarmSpec spec;
  spec.name = "smtpd";
  spec.pool = config.smtpd().farm();
  // smtpd's own name for the farm's recycling limit: one job is one session.
  if (config.smtpd().has_max_sessions_per_child()) {
    spec.pool.set_max_jobs(config.smtpd().max_sessions_per_child());
  }
  spec.scoreboard_path = farm::ScoreboardPath(config, "smtpd");
  // Under mailfarmd the listeners arrive already bound (fds 3.., config order),
  // so port 25 needs no root here and they outlive a restart of this process.
  std::vector<farm::UniqueFd> inherited = farm::TakeInheritedListeners();
  const auto& wanted = (*settings)->listeners;
  if (!inherited.empty() && inherited.size() != wanted.size()) {
    LOG(ERROR) << "smtpd: got " << inherited.size()
               << " listeners from mailfarmd but the "
               << "config has " << wanted.size()
               << " (restart mailfarmd after changing them)";
    return farm::kExitConfig;
  }
  for (size_t i = 0; i < wanted.size(); ++i) {
    const smtpd::ListenerSettings& l = wanted[i];
    if (!inherited.empty()) {
      spec.listeners.push_back(std::move(inherited[i]));
    } else {
      auto fd = farm::ListenTcp(l.address, l.port);
      if (!fd.ok()) {
        LOG(ERROR) << "smtpd: " << fd.status().message();
        return farm::kExitOsErr;
      }
      spec.listeners.push_back(std::move(*fd));
    }
    LOG(INFO) << "smtpd: listening on " << l.address << " port " << l.port
              << (l.proxy_protocol ? " (PROXY protocol)" : "")
              << (inherited.empty() ? "" : " (socket from mailfarmd)");
  }
  // The manager swaps the settings on SIGHUP; children forked afterwards get
  // the new ones.
  std::shared_ptr<const smtpd::SmtpdSettings> current = *settings;
  // One table of per-client counters for every child, mapped before the
  // first fork; its session cells are indexed by scoreboard slot (the farm
  // has max_children * 2 + 2 of them).
  auto anvil = smtpd::AnvilTable::Create(
      static_cast<int>(spec.pool.max_children()) * 2 + 2);
  if (!anvil.ok()) {
    LOG(ERROR) << "smtpd: " << anvil.status().message();
    return farm::kExitOsErr;
  }
  smtpd::AnvilTable* anvil_table = anvil->get();
  spec.reload = [&current, &tls_key] {
    auto fresh_config = farm::LoadConfig(FLAGS_config);
    if (!fresh_config.ok()) {
      LOG(ERROR) << "reload: " << fresh_config.status().message()
                 << " (keeping the old config)";
      return;
    }
    auto fresh = smtpd::BuildSettings(*fresh_config, tls_key.get());
    if (!fresh.ok()) {
      LOG(ERROR) << "reload: " << fresh.status().message()
                 << " (keeping the old config)";
      return;
    }
    current = *fresh;
  };
  return farm::RunFarm(
      std::move(spec),
      [&current, anvil_table]() -> std::unique_ptr<farm::ConnectionHandler> {
        return std::make_unique<smtpd::SmtpdHandler>(current, anvil_table);
      });
}
