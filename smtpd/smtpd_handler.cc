// smtpd_handler.cc: a farm child's life in mailfarm-smtpd: accept -> session.
#include "smtpd/smtpd_handler.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>

#include "smtpd/session.h"
#include "smtpd/socket_transport.h"

namespace smtpd {

namespace {

// Text address and port of a socket's local or peer end.
bool SocketAddress(int fd, bool peer, PeerAddress* out) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len)
               : ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (r != 0) return false;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    out->address =
        IpAddress::FromV4(reinterpret_cast<const uint8_t*>(&a->sin_addr))
            .ToString();
    out->port = ntohs(a->sin_port);
    return true;
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    out->address = IpAddress::FromV6(a->sin6_addr.s6_addr).ToString();
    out->port = ntohs(a->sin6_port);
    return true;
  }
  return false;
}

bool IsWildcard(const std::string& address) {
  return address == "0.0.0.0" || address == "::";
}

}  // namespace

SmtpdHandler::SmtpdHandler(std::shared_ptr<const SmtpdSettings> settings,
                           AnvilTable* anvil)
    : settings_(std::move(settings)),
      sink_(settings_->inject_socket, settings_->max_frame_bytes,
            settings_->inject_timeout_ms),
      anvil_(anvil) {
  for (const ListenerSettings& l : settings_->listeners) {
    listener_options_.push_back(OptionsForListener(
        l.proxy_protocol ? settings_->proxy_session : settings_->session, l));
  }
  if (!settings_->sasl_path.empty()) {
    sasl_ = std::make_unique<DovecotSasl>(settings_->sasl_path,
                                          settings_->sasl_timeout_ms);
  }
}

int SmtpdHandler::ListenerIndex(int fd) const {
  PeerAddress local;
  if (!SocketAddress(fd, false, &local)) return -1;
  auto local_ip = IpAddress::Parse(local.address);
  for (size_t i = 0; i < settings_->listeners.size(); ++i) {
    const ListenerSettings& l = settings_->listeners[i];
    if (l.port != local.port) continue;
    auto ip = IpAddress::Parse(l.address);
    if (IsWildcard(l.address) ||
        (ip && local_ip && ip->bytes == local_ip->bytes)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

void SmtpdHandler::Serve(farm::UniqueFd conn, farm::ChildContext& ctx) {
  ctx.MarkBusy();
  PeerAddress peer;
  if (!SocketAddress(conn.get(), true, &peer)) {
    ctx.JobDone();
    return;  // the client left before we looked
  }
  int listener = ListenerIndex(conn.get());
  const SessionOptions& options =
      listener < 0 ? settings_->session : listener_options_[listener];
  SocketTransport transport(std::move(conn), settings_->tls);
  Session session(options, &transport, &sink_, peer);
  session.set_sasl(sasl_.get());
  std::optional<AnvilClient> limits;
  if (anvil_ != nullptr) {
    limits.emplace(anvil_, ctx.slot(), settings_->anvil);
    session.set_client_limits(&*limits);
  }
  session.set_activity_hook([&ctx](bool busy) {
    if (busy) {
      ctx.MarkBusy();
    } else {
      ctx.MarkConnected();
    }
  });
  session.Run();
  LOG(INFO) << "disconnect from [" << session.client().address
            << "]:" << session.client().port
            << " messages=" << session.messages_accepted() << " ("
            << session.end_reason() << ")";
  ctx.JobDone();
}

}  // namespace smtpd
