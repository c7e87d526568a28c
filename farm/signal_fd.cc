// signal_fd.cc: signalfd wrapper.
#include "farm/signal_fd.h"

#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>

namespace farm {

StatusOr<SignalFd> SignalFd::Open(std::initializer_list<int> signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0)
    return Status::FromErrno("sigprocmask", errno);
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) return Status::FromErrno("signalfd", errno);
  return SignalFd(std::move(fd), set);
}

std::vector<int> SignalFd::Wait(int timeout_ms) {
  std::vector<int> got;
  pollfd pfd{fd_.get(), POLLIN, 0};
  if (::poll(&pfd, 1, timeout_ms) <= 0) return got;
  signalfd_siginfo info;
  while (::read(fd_.get(), &info, sizeof(info)) == sizeof(info)) {
    got.push_back(static_cast<int>(info.ssi_signo));
  }
  return got;
}

void SignalFd::ReleaseInChild() {
  sigprocmask(SIG_UNBLOCK, &set_, nullptr);
  fd_.Reset();
}

}  // namespace farm
