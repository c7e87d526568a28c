// signal_fd.h: signals delivered as readable data on an fd (signalfd), so the
// farm manager and mailfarmd handle them in their ordinary loop instead of in
// async signal handlers.
#ifndef MAILFARM_FARM_SIGNAL_FD_H_
#define MAILFARM_FARM_SIGNAL_FD_H_

#include <signal.h>

#include <initializer_list>
#include <vector>

#include "farm/status.h"
#include "farm/unique_fd.h"

namespace farm {

class SignalFd {
 public:
  // Blocks `signals` in the calling thread and opens a non-blocking signalfd.
  static StatusOr<SignalFd> Open(std::initializer_list<int> signals);

  int fd() const { return fd_.get(); }
  // Waits up to timeout_ms (-1: forever) and returns the signals received.
  std::vector<int> Wait(int timeout_ms);
  // In a freshly forked child: unblocks the signals and closes the fd, so an
  // exec'd program or a farm child starts with ordinary signal handling.
  void ReleaseInChild();

 private:
  SignalFd(UniqueFd fd, sigset_t set) : fd_(std::move(fd)), set_(set) {}
  UniqueFd fd_;
  sigset_t set_;
};

}  // namespace farm

#endif  // MAILFARM_FARM_SIGNAL_FD_H_
