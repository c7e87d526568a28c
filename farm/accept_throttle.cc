// accept_throttle.cc: the pause and the log line after accept() ran out of
// descriptors (see accept_throttle.h).
#include "farm/accept_throttle.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace farm {

bool AcceptThrottle::OutOfResources(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

AcceptThrottle::AcceptThrottle(std::string listener_name)
    : name_(std::move(listener_name)) {
  Reserve();
}

void AcceptThrottle::Reserve() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;  // tried again after the next line
  reserve_[0].Reset(fds[0]);
  reserve_[1].Reset(fds[1]);
}

int AcceptThrottle::Failed(int err) {
  int pause = pause_ms_;
  ++pauses_;
  reserve_[0].Reset();
  reserve_[1].Reset();
  LOG(WARNING) << name_ << ": accept: " << std::strerror(err)
               << "; not accepting for " << pause << " ms";
  Reserve();
  pause_ms_ = std::min(pause_ms_ * 2, kMaxPauseMs);
  return pause;
}

}  // namespace farm
