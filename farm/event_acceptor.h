// event_acceptor.h: the accept loop of a listening socket on a libevent loop,
// shared by the scheduler's inject, control and metrics endpoints: a batch of
// accepts per wake-up, a pause when out of descriptors (AcceptThrottle), and
// Pause/Resume for an endpoint at its connection limit.
#ifndef MAILFARM_FARM_EVENT_ACCEPTOR_H_
#define MAILFARM_FARM_EVENT_ACCEPTOR_H_

#include <event2/event.h>

#include <functional>
#include <memory>
#include <string>

#include "farm/accept_throttle.h"
#include "farm/unique_fd.h"

namespace farm {

// Not thread-safe: the loop's thread only. `on_connection` may destroy the
// acceptor from inside itself.
class EventAcceptor {
 public:
  // Takes each new connection (non-blocking, close-on-exec).
  using OnConnection = std::function<void(UniqueFd connection)>;

  // Starts accepting on `listener` (non-blocking), at most `batch` per wake-up.
  EventAcceptor(event_base* base, UniqueFd listener, std::string name,
                OnConnection on_connection, int batch = 64);
  ~EventAcceptor();
  EventAcceptor(const EventAcceptor&) = delete;
  EventAcceptor& operator=(const EventAcceptor&) = delete;

  // Stops taking connections (they wait in the kernel's backlog) until
  // Resume; for an endpoint at its limit.
  void Pause();
  void Resume();
  int resource_pauses() const { return throttle_.pauses(); }

 private:
  static void OnReadable(evutil_socket_t, short, void* arg);
  static void OnPauseOver(evutil_socket_t, short, void* arg);
  void AcceptBatch();
  void Arm();

  UniqueFd listener_;
  std::string name_;
  OnConnection on_connection_;
  int batch_;
  event* accept_event_ = nullptr;
  event* pause_timer_ = nullptr;
  AcceptThrottle throttle_;
  bool paused_ = false;       // by the owner
  bool backing_off_ = false;  // out of descriptors
  std::shared_ptr<bool> alive_;
};

}  // namespace farm

#endif  // MAILFARM_FARM_EVENT_ACCEPTOR_H_
