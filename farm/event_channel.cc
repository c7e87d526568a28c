// event_channel.cc: varint-delimited protobuf frames on a libevent bufferevent.
#include "farm/event_channel.h"

#include <event2/buffer.h>
#include <glog/logging.h>
#include <sys/socket.h>

#include <cerrno>

#include "farm/framed_stream.h"

namespace farm {

EventChannel::EventChannel(event_base* base, UniqueFd fd,
                           size_t max_frame_bytes, std::string name)
    : fd_(fd.get()), max_frame_bytes_(max_frame_bytes), name_(std::move(name)) {
  evutil_make_socket_nonblocking(fd.get());
  bev_ = bufferevent_socket_new(base, fd.Release(), BEV_OPT_CLOSE_ON_FREE);
  alive_ = std::make_shared<bool>(true);
}

EventChannel::~EventChannel() {
  *alive_ = false;
  if (bev_ != nullptr) bufferevent_free(bev_);
}

void EventChannel::Start(FrameCallback on_frame, CloseCallback on_close) {
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  bufferevent_setcb(bev_, &EventChannel::ReadCallback, nullptr,
                    &EventChannel::EventCallback, this);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
}

bool EventChannel::Send(const google::protobuf::MessageLite& message) {
  if (bev_ == nullptr) return false;
  std::string frame;
  AppendFrame(message, &frame);
  std::string_view rest(frame);
  // Nothing queued before it: try the socket at once. A reply usually fits in
  // the socket buffer, and this saves arming and disarming EPOLLOUT (two
  // epoll_ctl calls) and a loop iteration per frame. Whatever does not fit,
  // or an error, goes through the bufferevent, which reports errors itself.
  if (evbuffer_get_length(bufferevent_get_output(bev_)) == 0) {
    ssize_t n;
    do {
      n = ::send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) rest.remove_prefix(static_cast<size_t>(n));
    if (rest.empty()) return true;
  }
  return bufferevent_write(bev_, rest.data(), rest.size()) == 0;
}

void EventChannel::PauseReading(bool paused) {
  if (bev_ == nullptr) return;
  paused_ = paused;
  if (paused) {
    // Frames stop being delivered at once (DrainFrames checks paused_), but
    // the socket stays armed: pausing and resuming around every message would
    // cost two epoll_ctl calls. The read high-water mark still stops reading
    // once a frame's worth is buffered, so a peer that sends on cannot make
    // the input grow without bound.
    bufferevent_setwatermark(bev_, EV_READ, 0, max_frame_bytes_ + 16);
  } else {
    bufferevent_setwatermark(bev_, EV_READ, 0, 0);
    // Frames may already sit in the input buffer with no new read event coming.
    DrainFrames();
  }
}

size_t EventChannel::PendingOutputBytes() const {
  return bev_ == nullptr ? 0
                         : evbuffer_get_length(bufferevent_get_output(bev_));
}

void EventChannel::ReadCallback(bufferevent*, void* arg) {
  static_cast<EventChannel*>(arg)->DrainFrames();
}

void EventChannel::DrainFrames() {
  std::weak_ptr<bool> alive = alive_;
  while (bev_ != nullptr && !paused_) {
    evbuffer* input = bufferevent_get_input(bev_);
    size_t available = evbuffer_get_length(input);
    if (available == 0) return;
    size_t peek_len = std::min<size_t>(available, 5);
    const unsigned char* head =
        evbuffer_pullup(input, static_cast<ev_ssize_t>(peek_len));
    size_t header = 0, payload = 0;
    Status peek =
        PeekFrame(head, available, max_frame_bytes_, &header, &payload);
    if (peek.code() == Status::Code::kTempFail) {
      // A complete header but not the whole payload: PeekFrame saw only the
      // first bytes, so check the length against everything buffered.
      return;
    }
    if (!peek.ok()) {
      Fail(Status::Invalid(name_ + ": " + peek.message()));
      return;
    }
    const unsigned char* frame =
        evbuffer_pullup(input, static_cast<ev_ssize_t>(header + payload));
    std::string_view view(reinterpret_cast<const char*>(frame) + header,
                          payload);
    on_frame_(view);
    if (alive.expired() || !*alive.lock()) return;  // the callback destroyed us
    if (bev_ == nullptr) return;
    evbuffer_drain(bufferevent_get_input(bev_), header + payload);
  }
}

void EventChannel::EventCallback(bufferevent*, short events, void* arg) {
  auto* self = static_cast<EventChannel*>(arg);
  if (events & BEV_EVENT_EOF) {
    self->Fail(Status::Closed(self->name_ + ": connection closed by peer"));
  } else if (events & BEV_EVENT_ERROR) {
    self->Fail(Status::FromErrno(self->name_, EVUTIL_SOCKET_ERROR()));
  }
}

void EventChannel::Fail(const Status& why) {
  if (bev_ == nullptr) return;
  if (why.code() == Status::Code::kInvalid)
    LOG(WARNING) << why.message() << "; closing";
  bufferevent_free(bev_);
  bev_ = nullptr;
  CloseCallback on_close = std::move(on_close_);
  if (on_close) on_close(why);  // may destroy this
}

}  // namespace farm
