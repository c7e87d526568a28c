// smtp_reply.h: RFC 5321 reply parsing (multi-line replies, RFC 3463 enhanced
// status codes) and the EHLO capability list. Pure functions and a small line
// accumulator, used by smtp_session.
#ifndef MAILFARM_TRANSPORT_SMTP_REPLY_H_
#define MAILFARM_TRANSPORT_SMTP_REPLY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace transport {

struct SmtpReply {
  int code = 0;                    // 3 digits, e.g. 250
  std::string enhanced;            // "2.1.5" when the server gave one, else ""
  std::vector<std::string> lines;  // text after "250-"/"250 ", code stripped

  int Class() const { return code / 100; }  // 2, 3, 4 or 5
  // "250 2.1.5 Ok" with the lines joined by spaces, for logs and DSN text.
  std::string Text() const;
  // The enhanced code, or one derived from the class ("4.0.0", "5.0.0").
  std::string Dsn() const;
};

// Accumulates reply lines (without CRLF) until the last line of a reply.
// Not thread-safe.
class ReplyParser {
 public:
  // Adds one line. Sets *done when it was the last line ("250 ..." after any
  // "250-..."), after which reply() is complete and the parser resets on the
  // next AddLine. kInvalid for a line that is not "DDD[ -]text" or whose code
  // differs from the earlier lines of the same reply.
  farm::Status AddLine(std::string_view line, bool* done);
  const SmtpReply& reply() const { return reply_; }

 private:
  SmtpReply reply_;
  bool in_reply_ = false;
};

// What an EHLO reply offers (RFC 1869 keywords, case-insensitive).
struct EhloCapabilities {
  bool pipelining = false;
  bool starttls = false;
  bool eightbitmime = false;
  bool smtputf8 = false;
  bool size = false;
  uint64_t size_limit = 0;  // 0: no limit announced
  bool enhanced_status_codes = false;
};
// Reads the capabilities from an EHLO reply (lines after the first).
EhloCapabilities ParseEhlo(const SmtpReply& reply);

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_SMTP_REPLY_H_
