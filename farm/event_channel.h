// event_channel.h: framed protobuf messages over a socket driven by a libevent
// loop. The scheduler talks to farm children, inject clients and control
// clients through these; it never blocks on the peer.
#ifndef MAILFARM_FARM_EVENT_CHANNEL_H_
#define MAILFARM_FARM_EVENT_CHANNEL_H_

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <google/protobuf/message_lite.h>

#include <functional>
#include <memory>
#include <string_view>

#include "farm/status.h"
#include "farm/unique_fd.h"

namespace farm {

// Not thread-safe: use from the loop's thread only. The channel owns the fd.
// Callbacks may destroy the channel from inside themselves.
class EventChannel {
 public:
  // Called once per complete frame with its payload (valid only during the
  // call).
  using FrameCallback = std::function<void(std::string_view payload)>;
  // Called once when the peer closes, on a read/write error, or on a bad frame
  // (oversized or corrupt length: logged with `name`); no callback follows.
  using CloseCallback = std::function<void(const Status& why)>;

  EventChannel(event_base* base, UniqueFd fd, size_t max_frame_bytes,
               std::string name);
  ~EventChannel();
  EventChannel(const EventChannel&) = delete;
  EventChannel& operator=(const EventChannel&) = delete;

  void Start(FrameCallback on_frame, CloseCallback on_close);
  // Queues one frame; never blocks. Returns false when the channel is closed.
  bool Send(const google::protobuf::MessageLite& message);
  // Stop delivering frames (back-pressure) or resume. While paused at most
  // about one frame more is read from the socket.
  void PauseReading(bool paused);
  size_t PendingOutputBytes() const;
  bool open() const { return bev_ != nullptr; }
  int fd() const { return fd_; }
  const std::string& name() const { return name_; }

 private:
  static void ReadCallback(bufferevent* bev, void* arg);
  static void EventCallback(bufferevent* bev, short events, void* arg);
  void DrainFrames();
  void Fail(const Status& why);

  bufferevent* bev_ = nullptr;
  int fd_ = -1;
  size_t max_frame_bytes_;
  std::string name_;
  FrameCallback on_frame_;
  CloseCallback on_close_;
  std::shared_ptr<bool> alive_;
  bool paused_ = false;
};

}  // namespace farm

#endif  // MAILFARM_FARM_EVENT_CHANNEL_H_
