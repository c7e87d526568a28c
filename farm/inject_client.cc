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

InjectClient::InjectClient(UniqueFd fd, size_t max_frame_bytes)
    : fd_(std::move(fd)),
      stream_(fd_.get(), max_frame_bytes),
      chunk_limit_(std::min(kDefaultChunk, max_frame_bytes / 2)) {}

StatusOr<std::unique_ptr<InjectClient>> InjectClient::Connect(
    const std::string& socket_path, size_t max_frame_bytes) {
  auto fd = ConnectUnix(socket_path);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<InjectClient>(
      new InjectClient(std::move(*fd), max_frame_bytes));
}

Status InjectClient::Begin(const mailfarm::InjectRequest& request) {
  pending_.clear();
  mailfarm::InjectFrame frame;
  *frame.mutable_request() = request;
  return stream_.Write(frame);
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
  frame.mutable_chunk()->set_data(pending_);
  frame.mutable_chunk()->set_last(last);
  pending_.clear();
  return stream_.Write(frame);
}

StatusOr<mailfarm::InjectReply> InjectClient::Finish(int timeout_ms) {
  MAILFARM_RETURN_IF_ERROR(FlushChunk(true));
  mailfarm::InjectReply reply;
  Status read = stream_.Read(&reply, timeout_ms);
  if (!read.ok())
    return Status::TempFail("no reply from the scheduler: " + read.message());
  return reply;
}

}  // namespace farm
