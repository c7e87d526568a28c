// framed_stream.h: blocking, varint-length-delimited protobuf frames on a
// socket. Used by farm children (Job in, Result out), mailfarm-inject, smtpd's
// inject client, mailfarmctl and mailfarm-replay. The scheduler uses
// EventChannel instead.
#ifndef MAILFARM_FARM_FRAMED_STREAM_H_
#define MAILFARM_FARM_FRAMED_STREAM_H_

#include <google/protobuf/message_lite.h>

#include <string>
#include <vector>

#include "farm/status.h"

namespace farm {

// Not thread-safe. Does not own the fd, which must outlive the stream.
class FramedStream {
 public:
  FramedStream(int fd, size_t max_frame_bytes)
      : fd_(fd), max_frame_bytes_(max_frame_bytes) {}

  // Sends one frame with a single write where possible.
  Status Write(const google::protobuf::MessageLite& message);

  // Reads one frame into `message`. timeout_ms < 0 waits forever.
  // Returns kClosed on EOF at a frame boundary, kTempFail on timeout (nothing
  // consumed), and kInvalid for an oversized, truncated or unparsable frame;
  // after kInvalid the connection must be closed.
  Status Read(google::protobuf::MessageLite* message, int timeout_ms = -1);

  // True when bytes are buffered or the fd becomes readable within timeout_ms.
  // A signal cuts the wait short (false), so a waiting child notices at once
  // that it should leave.
  bool WaitReadable(int timeout_ms);

 private:
  // WaitReadable that sits out signals until the whole timeout has passed.
  bool WaitReadableFor(int timeout_ms);
  // Reads more bytes into buffer_, making room for `want` bytes in all; kClosed
  // at EOF.
  Status Fill(int timeout_ms, size_t want);

  int fd_;
  size_t max_frame_bytes_;
  // Bytes [begin_, end_) of buffer_ are received but not yet parsed. The vector
  // only grows (for a frame larger than it), so reads never zero-fill memory.
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

// Appends the varint length prefix and the serialized message to `out`.
void AppendFrame(const google::protobuf::MessageLite& message,
                 std::string* out);

// Looks for one complete frame at the start of [data, data+size).
// Returns kOk with *header_size/*payload_size set when complete, kTempFail when
// more bytes are needed, kInvalid when the length prefix is corrupt or the
// payload exceeds max_frame_bytes.
Status PeekFrame(const void* data, size_t size, size_t max_frame_bytes,
                 size_t* header_size, size_t* payload_size);

}  // namespace farm

#endif  // MAILFARM_FARM_FRAMED_STREAM_H_
