// line_encoder.h: turns the stored message (CRLF lines as received, maybe with
// no final newline) into what a transport writes: SMTP DATA (CRLF, dot-stuffed,
// "." terminator), Unix LF lines (Maildir, pipe) or mbox (LF, From_ quoted).
// Streaming, so a message of any size passes in chunks. Used by every
// transport.
#ifndef MAILFARM_TRANSPORT_LINE_ENCODER_H_
#define MAILFARM_TRANSPORT_LINE_ENCODER_H_

#include <string>
#include <string_view>

namespace transport {

// Not thread-safe; one instance per message.
class LineEncoder {
 public:
  enum class Mode {
    kSmtpData,  // CRLF line ends, "." doubled at a line start, ".\r\n" at end
    kUnix,      // LF line ends
    kMbox,      // LF line ends, ">" before a line starting with "From "
  };
  explicit LineEncoder(Mode mode) : mode_(mode) {}

  // Appends the encoding of `in` to `out`. CRLF and a bare LF both end a line;
  // a bare CR is kept as data.
  void Feed(std::string_view in, std::string* out);
  // Ends the message: terminates an unfinished last line and, for kSmtpData,
  // appends the ".\r\n" terminator. Feed must not be called afterwards.
  void Finish(std::string* out);

 private:
  void EndLine(std::string* out);
  // A line start that may need quoting; returns how many input bytes it took.
  size_t LineStart(std::string_view in, std::string* out);

  Mode mode_;
  bool at_line_start_ = true;
  bool pending_cr_ =
      false;  // the last byte fed was a CR not yet known to end a line
  std::string from_match_;  // kMbox: bytes of a possible "From " held back
};

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_LINE_ENCODER_H_
