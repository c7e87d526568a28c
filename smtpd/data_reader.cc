// data_reader.cc: the DATA-phase state machine (see data_reader.h for the
// rules).
#include "smtpd/data_reader.h"

namespace smtpd {

void DataReader::Emit(const char* p, size_t n, std::string* out) {
  message_bytes_ += n;
  if (message_bytes_ > max_bytes_) Flag(kTooBig);
  if (flags_ == 0) out->append(p, n);
}

void DataReader::CountLineOctet() {
  if (++line_octets_ > max_line_) Flag(kLongLine);
}

size_t DataReader::Feed(const char* data, size_t size, std::string* out) {
  size_t i = 0;
  while (i < size && state_ != State::kDone) {
    char c = data[i];
    switch (state_) {
      case State::kLineStart:
        line_octets_ = 0;
        if (c == '.') {
          CountLineOctet();
          state_ = State::kDot;
          ++i;
        } else {
          state_ = State::kText;  // reprocess c as text
        }
        break;
      case State::kDot:
        if (c == '\r') {
          CountLineOctet();
          state_ = State::kDotCr;
          ++i;
        } else {
          state_ = State::kText;  // the leading dot was stuffing: drop it
        }
        break;
      case State::kDotCr:
        if (c == '\n' && after_crlf_) {
          state_ = State::kDone;
          ++i;
        } else if (c == '\n') {
          // ".\r\n" after a bare LF is not <CRLF>.<CRLF>: an (unstuffed) empty
          // line.
          Emit("\r\n", 2, out);
          after_crlf_ = true;
          state_ = State::kLineStart;
          ++i;
        } else {
          state_ = State::kCr;  // the dot was stuffing; the CR is text
        }
        break;
      case State::kText: {
        // Fast path: copy the run of ordinary octets in one append.
        size_t start = i;
        while (i < size) {
          char d = data[i];
          if (d == '\r' || d == '\n' || d == '\0') break;
          ++i;
        }
        size_t run = i - start;
        if (run > 0) {
          line_octets_ += run;
          if (line_octets_ > max_line_) Flag(kLongLine);
          Emit(data + start, run, out);
        }
        if (i == size) break;
        char d = data[i];
        CountLineOctet();
        ++i;
        if (d == '\r') {
          state_ = State::kCr;
        } else if (d == '\n') {
          Flag(kBareLf);
          Emit("\n", 1, out);
          after_crlf_ = false;
          state_ = State::kLineStart;
        } else {
          Flag(kNul);
          Emit("\0", 1, out);
        }
        break;
      }
      case State::kCr:
        if (c == '\n') {
          CountLineOctet();
          Emit("\r\n", 2, out);
          after_crlf_ = true;
          state_ = State::kLineStart;
          ++i;
        } else {
          Flag(kBareCr);
          Emit("\r", 1, out);
          state_ = State::kText;  // reprocess c
        }
        break;
      case State::kDone:
        break;
    }
  }
  return i;
}

}  // namespace smtpd
