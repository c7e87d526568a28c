// accept_throttle.h: what a listener does when accept() fails for want of
// descriptors or memory. Used by EventAcceptor (the scheduler's endpoints) and
// by the farm children's accept loop.
#ifndef MAILFARM_FARM_ACCEPT_THROTTLE_H_
#define MAILFARM_FARM_ACCEPT_THROTTLE_H_

#include <string>

#include "farm/unique_fd.h"

namespace farm {

// The listener stays readable while the pending connection cannot be taken,
// so retrying at once spins (and logged millions of lines). Instead: stop
// accepting for a pause, 100 ms doubling to 2 s while the failures go on,
// with one log line per pause. Not thread-safe.
class AcceptThrottle {
 public:
  static constexpr int kMinPauseMs = 100;
  static constexpr int kMaxPauseMs = 2000;

  explicit AcceptThrottle(std::string listener_name);

  // EMFILE, ENFILE, ENOBUFS, ENOMEM: errors that retrying at once repeats.
  static bool OutOfResources(int err);
  // After such a failure: logs one line and returns the pause in ms.
  int Failed(int err);
  // After a connection was accepted: the next pause starts short again.
  void Succeeded() { pause_ms_ = kMinPauseMs; }
  int pauses() const { return pauses_; }

 private:
  void Reserve();

  std::string name_;
  // Two descriptors (a pipe) held back and let go while the line is logged:
  // logging must not need a descriptor the process has run out of (the
  // sanitizers' pointer checks open a pipe and reported garbage without).
  UniqueFd reserve_[2];
  int pause_ms_ = kMinPauseMs;
  int pauses_ = 0;
};

}  // namespace farm

#endif  // MAILFARM_FARM_ACCEPT_THROTTLE_H_
