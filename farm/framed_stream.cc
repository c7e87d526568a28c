// framed_stream.cc: blocking varint-delimited protobuf frames with a size cap.
#include "farm/framed_stream.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/delimited_message_util.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "farm/clock.h"
#include "farm/sockets.h"

namespace farm {

namespace {
constexpr size_t kMaxVarintBytes = 5;
constexpr size_t kReadSize = 64 * 1024;
}  // namespace

void AppendFrame(const google::protobuf::MessageLite& message,
                 std::string* out) {
  google::protobuf::io::StringOutputStream stream(out);
  google::protobuf::util::SerializeDelimitedToZeroCopyStream(message, &stream);
}

Status PeekFrame(const void* data, size_t size, size_t max_frame_bytes,
                 size_t* header_size, size_t* payload_size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t prefix = std::min(size, kMaxVarintBytes);
  google::protobuf::io::CodedInputStream coded(bytes, static_cast<int>(prefix));
  uint32_t length = 0;
  if (!coded.ReadVarint32(&length)) {
    // Either the varint is not complete yet or it is longer than 5 bytes.
    if (size >= kMaxVarintBytes)
      return Status::Invalid("corrupt frame length prefix");
    return Status::TempFail("incomplete frame header");
  }
  if (length > max_frame_bytes) {
    return Status::Invalid("frame of " + std::to_string(length) +
                           " bytes exceeds the limit of " +
                           std::to_string(max_frame_bytes));
  }
  *header_size = static_cast<size_t>(coded.CurrentPosition());
  *payload_size = length;
  if (size < *header_size + length) return Status::TempFail("incomplete frame");
  return Status::Ok();
}

Status FramedStream::Write(const google::protobuf::MessageLite& message) {
  std::string frame;
  AppendFrame(message, &frame);
  return WriteFull(fd_, frame.data(), frame.size());
}

bool FramedStream::WaitReadable(int timeout_ms) {
  if (begin_ < end_) return true;
  pollfd pfd{fd_, POLLIN, 0};
  // A signal ends the wait early on purpose: the farm manager wakes waiting
  // children with SIGUSR1 so that they re-check whether to leave.
  return ::poll(&pfd, 1, timeout_ms) > 0;
}

bool FramedStream::WaitReadableFor(int timeout_ms) {
  int64_t deadline = RealClock()->MonotonicMs() + timeout_ms;
  for (;;) {
    if (WaitReadable(timeout_ms)) return true;
    int64_t left = deadline - RealClock()->MonotonicMs();
    if (left <= 0) return false;
    timeout_ms = static_cast<int>(left);
  }
}

Status FramedStream::Fill(int timeout_ms, size_t want) {
  if (timeout_ms >= 0 && !WaitReadableFor(timeout_ms)) {
    return Status::TempFail("timeout");
  }
  // Move the unparsed tail to the front, then make room for the whole frame.
  if (begin_ > 0) {
    std::copy(buffer_.begin() + begin_, buffer_.begin() + end_,
              buffer_.begin());
    end_ -= begin_;
    begin_ = 0;
  }
  size_t needed = std::max(want, end_ + kReadSize);
  if (buffer_.size() < needed) buffer_.resize(needed);
  ssize_t n;
  do {
    n = ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("read", errno);
  if (n == 0) return Status::Closed("connection closed by peer");
  end_ += static_cast<size_t>(n);
  return Status::Ok();
}

Status FramedStream::Read(google::protobuf::MessageLite* message,
                          int timeout_ms) {
  for (;;) {
    size_t header = 0, payload = 0;
    const char* start = buffer_.data() + begin_;
    size_t available = end_ - begin_;
    Status peek = available == 0 ? Status::TempFail("empty")
                                 : PeekFrame(start, available, max_frame_bytes_,
                                             &header, &payload);
    if (peek.ok()) {
      if (!message->ParseFromArray(start + header, static_cast<int>(payload))) {
        return Status::Invalid("unparsable " + message->GetTypeName() +
                               " frame");
      }
      begin_ += header + payload;
      if (begin_ == end_) begin_ = end_ = 0;
      return Status::Ok();
    }
    if (peek.code() == Status::Code::kInvalid) return peek;
    size_t want = payload > 0 ? header + payload : 0;
    Status fill = Fill(timeout_ms, want);
    if (fill.code() == Status::Code::kClosed && end_ > begin_) {
      return Status::Invalid("connection closed in the middle of a frame");
    }
    if (!fill.ok()) return fill;
  }
}

}  // namespace farm
