// dsn.h: builds the RFC 3464 delivery status notification (multipart/report)
// that the scheduler queues to a sender whose mail could not be delivered.
// Pure functions; the queue manager runs them on an I/O thread.
#ifndef MAILFARM_SCHEDULER_DSN_H_
#define MAILFARM_SCHEDULER_DSN_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mailfarm::scheduler {

struct FailedRecipient {
  std::string original;  // address as received (Original-Recipient)
  std::string final;     // address delivery was tried to (Final-Recipient)
  std::string status;    // enhanced code, "5.1.1"
  std::string text;   // diagnostic text from the remote side or the scheduler
  std::string relay;  // "host[addr]:port", "local", ... ("" when none)
};

struct DsnInput {
  std::string reporting_mta;  // our hostname
  std::string from;           // "MAILER-DAEMON@host"
  std::string postmaster;     // mentioned in the human-readable part
  std::string qid;
  std::string sender;  // the original sender, the DSN's recipient
  int64_t arrival_unix_ms = 0;
  int64_t now_unix_ms = 0;
  bool expired = false;  // the failure is the queue lifetime running out
  std::vector<FailedRecipient> recipients;
  std::string original_headers;  // the original message's header block (CRLF)
};

// The complete message (headers and body, CRLF line endings).
std::string BuildDsn(const DsnInput& input);

// The header block of a message body: everything before the first empty line
// (at most `limit` bytes, cut at a line end).
std::string HeaderBlock(std::string_view message, size_t limit = 65536);

// RFC 5322 date, e.g. "Sun, 22 Nov 2026 08:21:28 +0000".
std::string Rfc5322Date(int64_t unix_ms);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_DSN_H_
