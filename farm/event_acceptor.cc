// event_acceptor.cc: accepting on a libevent loop with a pause when out of
// descriptors (see event_acceptor.h).
#include "farm/event_acceptor.h"

#include <glog/logging.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace farm {

EventAcceptor::EventAcceptor(event_base* base, UniqueFd listener,
                             std::string name, OnConnection on_connection,
                             int batch)
    : listener_(std::move(listener)),
      name_(std::move(name)),
      on_connection_(std::move(on_connection)),
      batch_(batch),
      throttle_(name_),
      alive_(std::make_shared<bool>(true)) {
  accept_event_ = event_new(base, listener_.get(), EV_READ | EV_PERSIST,
                            &EventAcceptor::OnReadable, this);
  pause_timer_ = evtimer_new(base, &EventAcceptor::OnPauseOver, this);
  Arm();
}

EventAcceptor::~EventAcceptor() {
  *alive_ = false;
  event_free(accept_event_);
  event_free(pause_timer_);
}

void EventAcceptor::Arm() {
  if (paused_ || backing_off_)
    event_del(accept_event_);
  else
    event_add(accept_event_, nullptr);
}

void EventAcceptor::Pause() {
  paused_ = true;
  Arm();
}

void EventAcceptor::Resume() {
  paused_ = false;
  Arm();
}

void EventAcceptor::OnReadable(evutil_socket_t, short, void* arg) {
  static_cast<EventAcceptor*>(arg)->AcceptBatch();
}

void EventAcceptor::OnPauseOver(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<EventAcceptor*>(arg);
  self->backing_off_ = false;
  self->Arm();
}

void EventAcceptor::AcceptBatch() {
  std::shared_ptr<bool> alive = alive_;
  for (int i = 0; i < batch_ && !paused_; ++i) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr,
                          SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      int err = errno;
      if (AcceptThrottle::OutOfResources(err)) {
        int pause_ms = throttle_.Failed(err);
        backing_off_ = true;
        Arm();
        timeval tv{pause_ms / 1000, (pause_ms % 1000) * 1000};
        evtimer_add(pause_timer_, &tv);
        return;
      }
      if (err == ECONNABORTED || err == EINTR) continue;
      if (err != EAGAIN) LOG(WARNING) << name_ << ": accept: " << strerror(err);
      return;
    }
    throttle_.Succeeded();
    on_connection_(std::move(fd));
    if (!*alive) return;
  }
}

}  // namespace farm
