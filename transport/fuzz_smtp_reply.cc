// fuzz_smtp_reply.cc: libFuzzer target for what a remote SMTP server sends
// the smtp transport: reply lines (ReplyParser) and the EHLO capability list
// (ParseEhlo). Any bytes must give replies or a Status, never a crash, a hang
// or an out-of-bounds read (built with ASan/UBSan by cmake/fuzz.cmake).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "transport/smtp_reply.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  transport::ReplyParser parser;
  while (!rest.empty()) {
    size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view()
                                         : rest.substr(end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    bool done = false;
    if (!parser.AddLine(line, &done).ok()) {
      parser = transport::ReplyParser();  // the session drops the connection
      continue;
    }
    if (!done) continue;
    const transport::SmtpReply& reply = parser.reply();
    // What the session relies on: a three-digit code of class 2-5.
    if (reply.code < 200 || reply.code > 599) __builtin_trap();
    std::string dsn = reply.Dsn();
    if (dsn.empty() || dsn[0] != static_cast<char>('0' + reply.Class()))
      __builtin_trap();
    (void)reply.Text();
    (void)transport::ParseEhlo(reply);
  }
  return 0;
}
