// fuzz_data_reader.cc: libFuzzer target for the DATA reader with an oracle:
// the data ends exactly at the first <CRLF>.<CRLF> (the CRLF of the DATA
// command counts), whatever the read boundaries; an unflagged message is the
// dot-unstuffed input and has no bare CR, bare LF or NUL. Built with clang
// only.
#include <cstddef>
#include <cstdint>
#include <string>

#include "smtpd/data_reader.h"

namespace {

struct Outcome {
  std::string body;
  size_t consumed = 0;
  bool done = false;
  uint32_t flags = 0;
};

Outcome Run(const std::string& in, size_t step) {
  smtpd::DataReader reader(1000, 1 << 16);
  Outcome o;
  while (o.consumed < in.size() && !reader.done()) {
    size_t n = step == 0 ? in.size() - o.consumed
                         : std::min(step, in.size() - o.consumed);
    size_t used = reader.Feed(in.data() + o.consumed, n, &o.body);
    o.consumed += used;
    if (used < n && !reader.done())
      __builtin_trap();  // only the end stops early
  }
  o.done = reader.done();
  o.flags = reader.flags();
  return o;
}

// Reference dot-unstuffing of a CRLF-only message.
std::string Unstuff(const std::string& msg) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < msg.size(); ++i) {
    if (line_start && msg[i] == '.') {
      line_start = false;
      continue;
    }
    out.push_back(msg[i]);
    line_start = msg[i] == '\n';
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = data[0] % 17;
  std::string in(reinterpret_cast<const char*>(data + 1), size - 1);
  Outcome a = Run(in, 0);
  Outcome b = Run(in, step);
  // What a flagged message appended before its flag is thrown away, so only an
  // unflagged body must be the same.
  if (a.consumed != b.consumed || a.done != b.done || a.flags != b.flags ||
      (a.flags == 0 && a.body != b.body)) {
    __builtin_trap();  // read boundaries changed the result
  }
  size_t end = ("\r\n" + in).find("\r\n.\r\n");
  bool want_done = end != std::string::npos;
  if (a.done != want_done) __builtin_trap();
  if (want_done && a.consumed != end + 3) __builtin_trap();
  if (a.done && a.flags == 0) {
    // In "\r\n" + in, the terminator starts at `end`; so in[0, end) is the
    // message with its final CRLF.
    std::string msg = in.substr(0, end);
    for (size_t i = 0; i < msg.size(); ++i) {
      if (msg[i] == '\0') __builtin_trap();
      if (msg[i] == '\n' && (i == 0 || msg[i - 1] != '\r')) __builtin_trap();
      if (msg[i] == '\r' && (i + 1 >= msg.size() || msg[i + 1] != '\n'))
        __builtin_trap();
    }
    if (a.body != Unstuff(msg)) __builtin_trap();
  }
  return 0;
}
