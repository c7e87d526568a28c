// delivery.h: what every transport shares: reading the message range of the
// queue file, the trace and added headers written before the message, and the
// per-recipient report (Result entries plus the DESIGN.md delivery log line).
// Used by smtp_transport, local_transport, pipe_transport, discard_transport.
#ifndef MAILFARM_TRANSPORT_DELIVERY_H_
#define MAILFARM_TRANSPORT_DELIVERY_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "wire.pb.h"

namespace transport {

// The byte range [body_offset, body_offset + body_size) of the queue file,
// opened read-only. Not thread-safe.
class MessageReader {
 public:
  // kTempFail naming the path when the file cannot be opened or is shorter
  // than the range (the scheduler will try again).
  static farm::StatusOr<MessageReader> Open(const mailfarm::Job& job);

  // Calls `fn` with successive chunks of the range (up to 256 KiB each),
  // stopping at the first non-ok Status from `fn` or from reading.
  farm::Status ForEachChunk(
      const std::function<farm::Status(std::string_view)>& fn) const;
  uint64_t size() const { return size_; }

 private:
  MessageReader(farm::UniqueFd fd, std::string path, uint64_t offset,
                uint64_t size)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        offset_(offset),
        size_(size) {}
  farm::UniqueFd fd_;
  std::string path_;
  uint64_t offset_;
  uint64_t size_;
};

// The outcome of one recipient, as a transport module decides it.
struct RecipientOutcome {
  mailfarm::Outcome outcome = mailfarm::OUTCOME_TEMPFAIL;
  std::string dsn;
  std::string text;
};

// RFC 5322 date-time, e.g. "Sun, 22 Nov 2026 08:22:11 +0000".
std::string RfcDate(int64_t unix_ms);

// Which trace headers precede the message.
enum class TraceKind {
  kRelay,  // Received: only (an SMTP relay hop)
  kLocal,  // Return-Path:, Delivered-To: (when a recipient is given), Received:
};

// The header block written before the message, CRLF line ends: trace headers,
// then job.added_headers (values with CR/LF replaced, so a header cannot be
// split). `recipient` may be nullptr (several recipients in one copy).
std::string MessagePrefix(const mailfarm::Job& job, const std::string& hostname,
                          TraceKind kind,
                          const mailfarm::JobRecipient* recipient);

// Collects the outcome of each recipient into Result and logs one delivery
// line per recipient. Not thread-safe; one per job.
class DeliveryReport {
 public:
  DeliveryReport(const mailfarm::Job& job, mailfarm::Result* result);

  // Time spent making the session (DNS, connect, greeting, TLS) and then
  // transmitting, shown in the log's delays=a/b/c/d (b: 0, the scheduler's
  // share).
  void SetTimes(int64_t setup_ms, int64_t transmit_ms) {
    setup_ms_ = setup_ms;
    transmit_ms_ = transmit_ms;
  }
  void Add(const mailfarm::JobRecipient& recipient, mailfarm::Outcome outcome,
           const std::string& dsn, const std::string& text,
           const std::string& relay);
  // The same outcome for every recipient of the job.
  void AddAll(mailfarm::Outcome outcome, const std::string& dsn,
              const std::string& text, const std::string& relay);
  // Sets the job-level outcome when every recipient has the same one. Called
  // once, after every recipient was added.
  void Finish() { Finish(result_); }
  static void Finish(mailfarm::Result* result);

 private:
  const mailfarm::Job& job_;
  mailfarm::Result* result_;
  int64_t start_unix_ms_;
  int64_t setup_ms_ = 0;
  int64_t transmit_ms_ = 0;
};

// "sent", "deferred" or "bounced", as in the delivery log.
const char* StatusWord(mailfarm::Outcome outcome);

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_DELIVERY_H_
