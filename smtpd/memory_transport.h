// memory_transport.h: in-memory Transport and MessageSink for the session's
// unit tests and the fuzz target. Input is a script of segments, each returned
// by one Read(), so a test controls exactly what arrives together (pipelining)
// and what arrives after a STARTTLS handshake.
#ifndef MAILFARM_SMTPD_MEMORY_TRANSPORT_H_
#define MAILFARM_SMTPD_MEMORY_TRANSPORT_H_

#include <algorithm>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "smtpd/message_sink.h"
#include "smtpd/transport.h"

namespace smtpd {

class MemoryTransport : public Transport {
 public:
  // A segment with this content makes Read() time out once.
  static constexpr const char* kTimeout = "\x01<timeout>\x01";

  std::deque<std::string> input;      // read before STARTTLS
  std::deque<std::string> tls_input;  // read after a successful STARTTLS
  bool tls_available = false;
  bool tls_active = false;
  bool fail_handshake = false;
  std::string written;
  int write_calls = 0;
  size_t plaintext_dropped = 0;  // unread plaintext segments at STARTTLS

  farm::StatusOr<size_t> Read(char* buf, size_t n,
                              int /*timeout_ms*/) override {
    if (input.empty()) return farm::Status::Closed("EOF");
    std::string& front = input.front();
    if (front == kTimeout) {
      input.pop_front();
      return farm::Status::TempFail("timeout");
    }
    if (front.empty()) {
      input.pop_front();
      return farm::Status::Closed("EOF");
    }
    size_t take = std::min(n, front.size());
    std::memcpy(buf, front.data(), take);
    front.erase(0, take);
    if (front.empty()) input.pop_front();
    return take;
  }
  farm::Status Write(std::string_view data, int /*timeout_ms*/) override {
    written.append(data);
    ++write_calls;
    return farm::Status::Ok();
  }
  bool CanStartTls() const override { return tls_available && !tls_active; }
  farm::Status StartTls(int /*timeout_ms*/) override {
    if (fail_handshake) return farm::Status::Error("handshake failed");
    // Whatever plaintext the peer sent and the session did not read would be
    // garbage to a real TLS handshake; here it is simply gone.
    plaintext_dropped = input.size();
    input = std::move(tls_input);
    tls_active = true;
    return farm::Status::Ok();
  }
  TlsInfo tls_info() const override {
    if (!tls_active) return TlsInfo{};
    return TlsInfo{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256};
  }
};

// Records messages; the verdict and failures are set by the test.
class MemorySink : public MessageSink {
 public:
  struct Message {
    Envelope envelope;
    std::string data;
  };
  SinkReply::Kind verdict = SinkReply::Kind::kAccepted;
  bool fail_begin = false;
  bool fail_finish = false;
  std::vector<Message> accepted;
  int aborted = 0;
  int next_qid = 1;

  farm::Status Begin(const Envelope& envelope) override {
    if (fail_begin) return farm::Status::Error("connect: no such file");
    current_ = Message{envelope, ""};
    open_ = true;
    return farm::Status::Ok();
  }
  farm::Status Write(std::string_view data) override {
    current_.data.append(data);
    return farm::Status::Ok();
  }
  farm::StatusOr<SinkReply> Finish() override {
    open_ = false;
    if (fail_finish)
      return farm::Status::TempFail("no reply from the scheduler");
    SinkReply reply;
    reply.kind = verdict;
    if (verdict == SinkReply::Kind::kAccepted) {
      reply.qid = "Q" + std::to_string(next_qid++);
      accepted.push_back(std::move(current_));
    } else {
      reply.text = verdict == SinkReply::Kind::kTempFail ? "spool full"
                                                         : "policy says no";
    }
    return reply;
  }
  void Abort() override {
    if (open_) ++aborted;
    open_ = false;
  }

 private:
  Message current_;
  bool open_ = false;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_MEMORY_TRANSPORT_H_
