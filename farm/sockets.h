// sockets.h: the few socket calls every mailfarm process makes (listen,
// connect, peer credentials), each returning a Status that names the address.
#ifndef MAILFARM_FARM_SOCKETS_H_
#define MAILFARM_FARM_SOCKETS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "farm/status.h"
#include "farm/unique_fd.h"

namespace farm {

// Binds and listens on a Unix stream socket at `path` (a stale socket file is
// replaced) and chmods it to `mode`. The fd is close-on-exec and non-blocking.
StatusOr<UniqueFd> ListenUnix(const std::string& path, mode_t mode,
                              int backlog = 1024);

// Binds and listens on TCP `address`:`port` (IPv4 or IPv6 literal; "::" is
// v6-only so that a v4 listener may sit beside it). Non-blocking,
// close-on-exec, SO_REUSEADDR.
StatusOr<UniqueFd> ListenTcp(const std::string& address, int port,
                             int backlog = 1024);

// Connects a blocking, close-on-exec Unix stream socket to `path`.
StatusOr<UniqueFd> ConnectUnix(const std::string& path);

struct PeerCred {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
};
// SO_PEERCRED and SO_PEERGROUPS of a connected Unix socket (the groups stay
// empty on a kernel older than 4.13).
StatusOr<PeerCred> GetPeerCred(int fd);

// True when `cred` is root, the current process's uid, one of `uids`, or has
// one of `gids` as its primary or a supplementary group.
bool PeerAllowed(const PeerCred& cred, const std::vector<uid_t>& uids,
                 const std::vector<gid_t>& gids);

// OK when the peer of a connected Unix socket runs as root or as this
// process's uid: the farm sockets' rule both ways (the scheduler and the farm
// children run as the one service account). The error names the peer.
Status CheckPeerIsUs(int fd);

// True when `fd` is a Unix-domain socket (SO_PEERCRED means something).
bool IsUnixSocket(int fd);

Status SetNonBlocking(int fd, bool non_blocking);

// Writes all of `size` bytes, retrying on EINTR and short writes (blocking fd).
Status WriteFull(int fd, const void* data, size_t size);

// Listening sockets handed over by the parent in the systemd socket-activation
// convention (fds 3.. with LISTEN_FDS=n and LISTEN_PID=our pid), as mailfarmd
// passes smtpd's. Empty when none were passed. Clears the variables so that a
// process started by the caller does not take them too.
std::vector<UniqueFd> TakeInheritedListeners();

// Returns the port a bound TCP socket listens on (for tests that bind port 0).
StatusOr<int> LocalPort(int fd);

}  // namespace farm

#endif  // MAILFARM_FARM_SOCKETS_H_
