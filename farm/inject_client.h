// inject_client.h: the blocking client side of inject.sock, shared by
// mailfarm-smtpd's children and mailfarm-inject (sendmail). Sends
// InjectRequest, body chunks and the end marker, then waits for the scheduler's
// durable reply.
#ifndef MAILFARM_FARM_INJECT_CLIENT_H_
#define MAILFARM_FARM_INJECT_CLIENT_H_

#include <memory>
#include <string>
#include <string_view>

#include "farm/framed_stream.h"
#include "farm/status.h"
#include "farm/unique_fd.h"
#include "wire.pb.h"

namespace farm {

// One connection; several messages may be sent on it one after another.
// Not thread-safe.
class InjectClient {
 public:
  // Connects to inject.sock. Fails with a Status naming the path.
  static StatusOr<std::unique_ptr<InjectClient>> Connect(
      const std::string& socket_path, size_t max_frame_bytes = 1 << 20);

  // Starts a message. REQUIRES: no message in progress. Sends nothing yet:
  // the request leaves with the first body chunk (one write for a message
  // under 64 KiB). If that first write finds the kept connection closed by
  // the scheduler (after an earlier message succeeded on it), it reconnects
  // once and sends the message on the new connection.
  Status Begin(const mailfarm::InjectRequest& request);
  // Adds body bytes (CRLF line endings, dot-unstuffed); sent in chunks well
  // under the frame limit.
  Status Write(std::string_view body);
  // Ends the message and waits up to timeout_ms for the reply, which the
  // scheduler sends only once the message is on stable storage (or refused).
  // A transport error means "not accepted": the caller must tempfail.
  StatusOr<mailfarm::InjectReply> Finish(int timeout_ms);

 private:
  InjectClient(UniqueFd fd, std::string socket_path, size_t max_frame_bytes);
  Status FlushChunk(bool last);

  UniqueFd fd_;
  std::string socket_path_;
  size_t max_frame_bytes_;
  FramedStream stream_;
  size_t chunk_limit_;
  std::string pending_;        // body bytes not yet framed
  std::string out_;            // framed bytes not yet written
  bool nothing_sent_ = false;  // no byte of the current message written yet
  bool proven_ = false;        // a reply has come back on this connection
};

}  // namespace farm

#endif  // MAILFARM_FARM_INJECT_CLIENT_H_
