// data_reader.h: the DATA-phase parser of mailfarm-smtpd. A push parser fed the
// bytes that follow "354"; it finds the end of data, removes dot-stuffing,
// and flags what makes a message unacceptable. It is the SMTP-smuggling guard
// (CVE-2023-51764 class): only <CRLF>.<CRLF> ends the data, a bare LF or bare
// CR anywhere flags the message, so a "fake" end of data followed by pipelined
// commands stays inside the (rejected) message and is never executed.
// Used by Session and the fuzz target; pure code, no I/O. Not thread-safe.
#ifndef MAILFARM_SMTPD_DATA_READER_H_
#define MAILFARM_SMTPD_DATA_READER_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace smtpd {

class DataReader {
 public:
  // Flags: why a message must be refused. Set flags never clear.
  enum Flag : uint32_t {
    kBareLf = 1,    // LF not preceded by CR
    kBareCr = 2,    // CR not followed by LF
    kNul = 4,       // a NUL octet
    kLongLine = 8,  // a line over max_line octets (CRLF included)
    kTooBig = 16,   // more than max_bytes of message
  };

  // max_line: RFC 5321's 1000 octets including CRLF. max_bytes: the SIZE limit
  // on the unstuffed message (the Received header is the caller's business).
  DataReader(size_t max_line, uint64_t max_bytes)
      : max_line_(max_line), max_bytes_(max_bytes) {}

  // Consumes bytes from [data, data+size) up to and including the terminating
  // ".\r\n" and appends the unstuffed message (CRLF line endings) to *out.
  // Returns the number of bytes consumed; done() tells whether the end was
  // found (bytes after it belong to the next command). Once a flag is set
  // nothing more is appended (the message is going to be refused anyway).
  size_t Feed(const char* data, size_t size, std::string* out);

  bool done() const { return state_ == State::kDone; }
  uint32_t flags() const { return flags_; }
  // Octets of message appended so far (or that would have been, after a flag).
  uint64_t message_bytes() const { return message_bytes_; }

 private:
  enum class State {
    kLineStart,  // at the start of a line
    kDot,        // a line that began with "."
    kDotCr,      // a line that began with ".\r"
    kText,       // inside a line
    kCr,         // a CR inside a line, LF expected
    kDone,
  };
  void Emit(const char* p, size_t n, std::string* out);
  void Flag(uint32_t f) { flags_ |= f; }
  void CountLineOctet();

  size_t max_line_;
  uint64_t max_bytes_;
  State state_ = State::kLineStart;
  // True when the current line began after a CRLF (or at the start of data): a
  // ".\r\n" line ends the data only then.
  bool after_crlf_ = true;
  size_t line_octets_ = 0;
  uint64_t message_bytes_ = 0;
  uint32_t flags_ = 0;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_DATA_READER_H_
