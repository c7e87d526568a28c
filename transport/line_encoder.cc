// line_encoder.cc: CRLF normalisation, dot-stuffing and From_ quoting for the
// transports (see line_encoder.h).
#include "transport/line_encoder.h"

#include <cstring>

namespace transport {

namespace {
constexpr std::string_view kFrom = "From ";
}  // namespace

void LineEncoder::EndLine(std::string* out) {
  if (mode_ == Mode::kMbox && !from_match_.empty()) {
    out->append(from_match_);  // a short line that was a prefix of "From "
    from_match_.clear();
  }
  if (mode_ == Mode::kSmtpData) {
    out->append("\r\n");
  } else {
    out->push_back('\n');
  }
  at_line_start_ = true;
}

size_t LineEncoder::LineStart(std::string_view in, std::string* out) {
  if (mode_ == Mode::kSmtpData) {
    if (in[0] == '.') out->push_back('.');
    at_line_start_ = false;
    return 0;
  }
  if (mode_ == Mode::kUnix) {
    at_line_start_ = false;
    return 0;
  }
  // kMbox: collect up to five bytes to compare with "From " across chunks.
  size_t taken = 0;
  while (taken < in.size() && from_match_.size() < kFrom.size()) {
    char c = in[taken];
    if (c != kFrom[from_match_.size()]) break;
    from_match_.push_back(c);
    ++taken;
  }
  if (from_match_.size() == kFrom.size()) {
    out->push_back('>');
  } else if (taken == in.size()) {
    return taken;  // still a prefix of "From "; wait for more input
  }
  out->append(from_match_);
  from_match_.clear();
  at_line_start_ = false;
  return taken;
}

void LineEncoder::Feed(std::string_view in, std::string* out) {
  out->reserve(out->size() + in.size() + in.size() / 32 + 8);
  size_t i = 0;
  while (i < in.size()) {
    if (pending_cr_) {
      pending_cr_ = false;
      if (in[i] == '\n') {
        EndLine(out);
        ++i;
        continue;
      }
      // A bare CR: data on the current line.
      if (at_line_start_) {
        // The CR was the first byte of the line; nothing to quote before it.
        at_line_start_ = false;
        if (!from_match_.empty()) {
          out->append(from_match_);
          from_match_.clear();
        }
      }
      out->push_back('\r');
    }
    if (at_line_start_) {
      char c = in[i];
      if (c != '\r' && c != '\n') {
        i += LineStart(in.substr(i), out);
        if (at_line_start_) continue;  // kMbox waiting for more bytes
        if (i >= in.size()) break;
      }
    }
    // Copy the run up to the next CR or LF in one append.
    const char* begin = in.data() + i;
    size_t rest = in.size() - i;
    size_t run = 0;
    while (run < rest && begin[run] != '\r' && begin[run] != '\n') ++run;
    out->append(begin, run);
    if (run > 0) at_line_start_ = false;
    i += run;
    if (i >= in.size()) break;
    if (in[i] == '\n') {
      EndLine(out);
    } else {
      pending_cr_ = true;
      if (at_line_start_ && !from_match_.empty()) {
        // "Fro\r": not "From "; the bytes are data.
        out->append(from_match_);
        from_match_.clear();
        at_line_start_ = false;
      }
    }
    ++i;
  }
}

void LineEncoder::Finish(std::string* out) {
  if (pending_cr_) {
    // A CR as the very last byte: treat it as the end of the last line.
    pending_cr_ = false;
    EndLine(out);
  }
  if (!at_line_start_ || !from_match_.empty()) EndLine(out);
  if (mode_ == Mode::kSmtpData) out->append(".\r\n");
}

}  // namespace transport
