// sockets.cc: listen/connect/peer-credential helpers shared by every process.
#include "farm/sockets.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace farm {

namespace {

StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status::Invalid("socket path too long (max " +
                           std::to_string(sizeof(addr.sun_path) - 1) +
                           "): " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode,
                              int backlog) {
  // Bound and listening under a temporary name first, then renamed into place:
  // a client never finds the path before it accepts connections, and a
  // running predecessor's socket is replaced in one step.
  std::string tmp = path + ".new";
  auto addr = UnixAddress(tmp);
  if (!addr.ok()) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Status::FromErrno("socket(AF_UNIX)", errno);
  ::unlink(tmp.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr)) !=
      0) {
    return Status::FromErrno("bind " + path, errno);
  }
  if (::chmod(tmp.c_str(), mode) != 0)
    return Status::FromErrno("chmod " + path, errno);
  if (::listen(fd.get(), backlog) != 0)
    return Status::FromErrno("listen " + path, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::FromErrno("rename " + path, errno);
  return fd;
}

StatusOr<UniqueFd> ListenTcp(const std::string& address, int port,
                             int backlog) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (::inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(*v4);
  } else if (::inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(*v6);
  } else {
    return Status::Invalid("not an IPv4 or IPv6 address: " + address);
  }
  std::string name = address + ":" + std::to_string(port);
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Status::FromErrno("socket for " + name, errno);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Status::FromErrno("bind " + name, errno);
  }
  if (::listen(fd.get(), backlog) != 0)
    return Status::FromErrno("listen " + name, errno);
  return fd;
}

StatusOr<UniqueFd> ConnectUnix(const std::string& path) {
  auto addr = UnixAddress(path);
  if (!addr.ok()) return addr.status();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Status::FromErrno("socket(AF_UNIX)", errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&*addr), sizeof(*addr)) !=
      0) {
    return Status::FromErrno("connect " + path, errno);
  }
  return fd;
}

StatusOr<PeerCred> GetPeerCred(int fd) {
  ucred uc{};
  socklen_t len = sizeof(uc);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0) {
    return Status::FromErrno("getsockopt(SO_PEERCRED)", errno);
  }
  PeerCred cred{uc.pid, uc.uid, uc.gid, {}};
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t size = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &size) ==
        0) {
      groups.resize(size / sizeof(gid_t));
      cred.groups = std::move(groups);
      break;
    }
    // ERANGE: `size` now says how much room the list needs.
    if (errno != ERANGE || size <= groups.size() * sizeof(gid_t)) break;
    groups.resize(size / sizeof(gid_t));
  }
  return cred;
}

bool PeerAllowed(const PeerCred& cred, const std::vector<uid_t>& uids,
                 const std::vector<gid_t>& gids) {
  if (cred.uid == 0 || cred.uid == ::geteuid()) return true;
  for (uid_t uid : uids) {
    if (uid == cred.uid) return true;
  }
  for (gid_t gid : gids) {
    if (gid == cred.gid) return true;
    for (gid_t group : cred.groups)
      if (group == gid) return true;
  }
  return false;
}

Status CheckPeerIsUs(int fd) {
  auto cred = GetPeerCred(fd);
  if (!cred.ok()) return cred.status();
  if (cred->uid == 0 || cred->uid == ::geteuid()) return Status::Ok();
  return Status::Invalid("peer uid " + std::to_string(cred->uid) + " (pid " +
                         std::to_string(cred->pid) +
                         ") is neither root nor uid " +
                         std::to_string(::geteuid()));
}

bool IsUnixSocket(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  return ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
         addr.ss_family == AF_UNIX;
}

Status SetNonBlocking(int fd, bool non_blocking) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return Status::FromErrno("fcntl(F_GETFL)", errno);
  flags = non_blocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) != 0)
    return Status::FromErrno("fcntl(F_SETFL)", errno);
  return Status::Ok();
}

Status WriteFull(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write", errno);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::vector<UniqueFd> TakeInheritedListeners() {
  std::vector<UniqueFd> fds;
  const char* count = std::getenv("LISTEN_FDS");
  const char* pid = std::getenv("LISTEN_PID");
  if (count == nullptr || pid == nullptr || std::atol(pid) != ::getpid())
    return fds;
  int n = std::atoi(count);
  for (int i = 0; i < n; ++i) {
    int fd = 3 + i;
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    SetNonBlocking(fd, true);
    fds.emplace_back(fd);
  }
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_PID");
  return fds;
}

StatusOr<int> LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return Status::FromErrno("getsockname", errno);
  }
  if (ss.ss_family == AF_INET)
    return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return Status::Invalid("not a TCP socket");
}

}  // namespace farm
