// inject_sink.h: the MessageSink of smtpd's children: streams each message to
// the scheduler over inject.sock with farm::InjectClient while DATA arrives,
// and keeps the connection for the next message (and the next session).
#ifndef MAILFARM_SMTPD_INJECT_SINK_H_
#define MAILFARM_SMTPD_INJECT_SINK_H_

#include <memory>
#include <string>

#include "farm/inject_client.h"
#include "smtpd/message_sink.h"

namespace smtpd {

// Not thread-safe; one per child.
class InjectSink : public MessageSink {
 public:
  InjectSink(std::string socket_path, size_t max_frame_bytes,
             int finish_timeout_ms)
      : socket_path_(std::move(socket_path)),
        max_frame_bytes_(max_frame_bytes),
        finish_timeout_ms_(finish_timeout_ms) {}

  // Connects if needed. A kept connection that the scheduler closed meanwhile
  // fails on the first write (EPIPE on a Unix socket): one fresh connect then.
  farm::Status Begin(const Envelope& envelope) override;
  farm::Status Write(std::string_view data) override;
  farm::StatusOr<SinkReply> Finish() override;
  // Closes the connection: the scheduler drops an unfinished message.
  void Abort() override;

 private:
  farm::Status Connect();

  std::string socket_path_;
  size_t max_frame_bytes_;
  int finish_timeout_ms_;
  std::unique_ptr<farm::InjectClient> client_;
  bool in_message_ = false;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_INJECT_SINK_H_
