// inject_client.cc: blocking client of inject.sock (smtpd children,
// mailfarm-inject).
#include "farm/inject_client.h"

#include "farm/sockets.h"

namespace farm {

namespace {
// Body chunks stay well under the frame limit so framing overhead never tips
// one over.
constexpr size_t kDefaultChunk = 64 * 1024;
}  // namespace

InjectClient::InjectClient(UniqueFd fd, std::string socket_path,
                           size_t max_frame_bytes)
    : fd_(std::move(fd)),
      socket_path_(std::move(socket_path)),
      max_frame_bytes_(max_frame_bytes),
      stream_(fd_.get(), max_frame_bytes),
      chunk_limit_(std::min(kDefaultChunk, max_frame_bytes / 2)) {}

StatusOr<std::unique_ptr<InjectClient>> InjectClient::Connect(
    const std::string& socket_path, size_t max_frame_bytes) {
  auto fd = ConnectUnix(socket_path);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<InjectClient>(
      new InjectClient(std::move(*fd), socket_path, max_frame_bytes));
}

Status InjectClient::Begin(const mailfarm::InjectRequest& request) {
  pending_.clear();
  out_.clear();
  mailfarm::InjectFrame frame;
  *frame.mutable_request() = request;
  // Held back and sent with the first chunk: a message under chunk_limit_
  // leaves in one write (one read and one loop wake-up in the scheduler).
  AppendFrame(frame, &out_);
  nothing_sent_ = true;
  return Status::Ok();
}

Status InjectClient::Write(std::string_view body) {
  while (!body.empty()) {
    size_t take = std::min(body.size(), chunk_limit_ - pending_.size());
    pending_.append(body.data(), take);
    body.remove_prefix(take);
    if (pending_.size() >= chunk_limit_)
      MAILFARM_RETURN_IF_ERROR(FlushChunk(false));
  }
  return Status::Ok();
}

Status InjectClient::FlushChunk(bool last) {
  mailfarm::InjectFrame frame;
  // The body bytes move into the frame and back, so pending_ keeps its
  // capacity and the chunk is not copied.
  frame.mutable_chunk()->set_data(std::move(pending_));
  frame.mutable_chunk()->set_last(last);
  AppendFrame(frame, &out_);
  pending_.swap(*frame.mutable_chunk()->mutable_data());
  pending_.clear();
  Status s = WriteFull(fd_.get(), out_.data(), out_.size());
  if (!s.ok() && nothing_sent_ && proven_) {
    // A kept connection the scheduler closed meanwhile (it restarted) fails
    // on the first write (EPIPE): nothing of this message reached it, so one
    // fresh connection gets the whole of it.
    auto fd = ConnectUnix(socket_path_);
    if (fd.ok()) {
      fd_ = std::move(*fd);
      stream_ = FramedStream(fd_.get(), max_frame_bytes_);
      proven_ = false;
      s = WriteFull(fd_.get(), out_.data(), out_.size());
    }
  }
  out_.clear();
  nothing_sent_ = false;
  return s;
}

StatusOr<mailfarm::InjectReply> InjectClient::Finish(int timeout_ms) {
  MAILFARM_RETURN_IF_ERROR(FlushChunk(true));
  mailfarm::InjectReply reply;
  Status read = stream_.Read(&reply, timeout_ms);
  if (!read.ok())
    return Status::TempFail("no reply from the scheduler: " + read.message());
  proven_ = true;
  return reply;
}

}  // namespace farm
