// smtp_reply.cc: SMTP reply lines and EHLO keywords (see smtp_reply.h).
#include "transport/smtp_reply.h"

#include <strings.h>

#include <cctype>
#include <cstdlib>
#include <cstring>

namespace transport {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// An RFC 3463 code "c.sss.ddd" at the start of `text` whose class matches
// `reply_class`; returns its length, or 0 when there is none.
size_t EnhancedCodeLength(std::string_view text, int reply_class) {
  if (text.size() < 5) return 0;
  if (text[0] != static_cast<char>('0' + reply_class) || text[1] != '.') {
    return 0;
  }
  size_t i = 2;
  size_t digits = 0;
  while (i < text.size() && IsDigit(text[i]) && digits < 3) ++i, ++digits;
  if (digits == 0 || i >= text.size() || text[i] != '.') return 0;
  ++i;
  digits = 0;
  while (i < text.size() && IsDigit(text[i]) && digits < 3) ++i, ++digits;
  if (digits == 0) return 0;
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

bool KeywordIs(std::string_view word, const char* keyword) {
  return word.size() == strlen(keyword) &&
         strncasecmp(word.data(), keyword, word.size()) == 0;
}

}  // namespace

std::string SmtpReply::Text() const {
  std::string text = std::to_string(code);
  bool first = true;
  for (const std::string& line : lines) {
    text.push_back(' ');
    // Enhanced codes repeat on every line of a multi-line reply; keep the
    // first.
    size_t skip = first ? 0 : EnhancedCodeLength(line, Class());
    if (skip > 0 && skip < line.size()) ++skip;
    text.append(line, skip);
    first = false;
  }
  return text;
}

std::string SmtpReply::Dsn() const {
  if (!enhanced.empty()) return enhanced;
  return std::to_string(Class() >= 2 && Class() <= 5 ? Class() : 4) + ".0.0";
}

farm::Status ReplyParser::AddLine(std::string_view line, bool* done) {
  *done = false;
  if (line.size() < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) ||
      !IsDigit(line[2]) || line[0] < '2' || line[0] > '5' ||
      (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    return farm::Status::Invalid("malformed SMTP reply line \"" +
                                 std::string(line.substr(0, 80)) + "\"");
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (!in_reply_) {
    reply_ = SmtpReply();
    reply_.code = code;
    in_reply_ = true;
  } else if (code != reply_.code) {
    in_reply_ = false;
    return farm::Status::Invalid("SMTP reply code changed within a reply: " +
                                 std::to_string(reply_.code) + " then \"" +
                                 std::string(line.substr(0, 80)) + "\"");
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : "";
  if (reply_.lines.empty()) {
    size_t n = EnhancedCodeLength(text, code / 100);
    if (n > 0) reply_.enhanced = std::string(text.substr(0, n));
  }
  reply_.lines.emplace_back(text);
  if (line.size() == 3 || line[3] == ' ') {
    in_reply_ = false;
    *done = true;
  }
  return farm::Status::Ok();
}

EhloCapabilities ParseEhlo(const SmtpReply& reply) {
  EhloCapabilities caps;
  for (size_t i = 1; i < reply.lines.size(); ++i) {
    std::string_view line = reply.lines[i];
    size_t space = line.find(' ');
    std::string_view word = line.substr(0, space);
    std::string_view param =
        space == std::string_view::npos ? "" : line.substr(space + 1);
    if (KeywordIs(word, "PIPELINING")) {
      caps.pipelining = true;
    } else if (KeywordIs(word, "STARTTLS")) {
      caps.starttls = true;
    } else if (KeywordIs(word, "8BITMIME")) {
      caps.eightbitmime = true;
    } else if (KeywordIs(word, "SMTPUTF8")) {
      caps.smtputf8 = true;
    } else if (KeywordIs(word, "ENHANCEDSTATUSCODES")) {
      caps.enhanced_status_codes = true;
    } else if (KeywordIs(word, "SIZE")) {
      caps.size = true;
      caps.size_limit = strtoull(std::string(param).c_str(), nullptr, 10);
    }
  }
  return caps;
}

}  // namespace transport
