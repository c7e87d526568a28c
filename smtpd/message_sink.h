// message_sink.h: where a session's accepted messages go. Production uses
// InjectSink (inject_sink.h: the scheduler over inject.sock); unit tests and
// the fuzz target use fakes. Kept free of protobuf so the protocol code builds
// without it.
#ifndef MAILFARM_SMTPD_MESSAGE_SINK_H_
#define MAILFARM_SMTPD_MESSAGE_SINK_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace smtpd {

struct ClientIdentity {
  std::string helo;
  std::string address;  // text form of the (PROXY-resolved) client address
  int port = 0;
  std::string protocol;  // "SMTP", "ESMTP", "ESMTPS", "UTF8SMTP", "UTF8SMTPS"
  std::string tls;       // "TLSv1.3 TLS_AES_256_GCM_SHA384" or empty
  std::string sasl_method;    // SMTP AUTH mechanism; empty without AUTH
  std::string sasl_username;  // the authenticated user
};

struct Envelope {
  std::string sender;  // empty for the null reverse-path
  std::vector<std::string> recipients;
  uint64_t announced_size = 0;  // MAIL SIZE=, 0 when not given
  bool smtputf8 = false;
  bool eight_bit = false;
  ClientIdentity client;
};

struct SinkReply {
  enum class Kind { kAccepted, kTempFail, kReject };
  Kind kind = Kind::kTempFail;
  std::string qid;
  std::string dsn;   // "4.3.0"; may be empty
  std::string text;  // may be empty
};

// One message at a time: Begin, Write..., then Finish or Abort. Not
// thread-safe.
class MessageSink {
 public:
  virtual ~MessageSink() = default;
  // Starts a message. An error means the queue is unreachable (reply 451).
  virtual farm::Status Begin(const Envelope& envelope) = 0;
  // Streams message bytes (CRLF lines, dot-unstuffed).
  virtual farm::Status Write(std::string_view data) = 0;
  // Ends the message and waits for the queue's durable verdict. An error
  // means "not accepted" (reply 451), never "maybe accepted".
  virtual farm::StatusOr<SinkReply> Finish() = 0;
  // Drops the message in progress so that the queue never accepts it.
  virtual void Abort() = 0;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_MESSAGE_SINK_H_
