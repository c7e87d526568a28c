// smtp_command.cc: SMTP command and path grammar (RFC 5321 4.1.2, RFC 6531).
#include "smtpd/smtp_command.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace smtpd {

namespace {

constexpr size_t kMaxPath = 256;      // RFC 5321 4.5.3.1.3
constexpr size_t kMaxLocalPart = 64;  // RFC 5321 4.5.3.1.1
constexpr size_t kMaxDomain = 255;    // RFC 5321 4.5.3.1.2

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool IsAtext(unsigned char c, bool utf8) {
  if (c >= 0x80) return utf8;
  if (std::isalnum(c)) return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != 0;
}

bool ValidDotString(std::string_view s, bool utf8) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (c != '.' && !IsAtext(c, utf8)) return false;
  }
  return true;
}

bool ValidQuotedString(std::string_view s, bool utf8) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    unsigned char c = s[i];
    if (c == '\\') {
      if (i + 2 >= s.size()) return false;
      unsigned char q = s[++i];
      if (q < 32 || q > 126) return false;
    } else if (c == '"' || c < 32 || c == 127 || (c >= 0x80 && !utf8)) {
      return false;
    }
  }
  return true;
}

bool ValidAddressLiteral(std::string_view s) {
  if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
  std::string inner(s.substr(1, s.size() - 2));
  unsigned char buf[16];
  if (inner.size() > 5 && StartsWithIgnoreCase(inner, "IPv6:")) {
    return ::inet_pton(AF_INET6, inner.c_str() + 5, buf) == 1;
  }
  return ::inet_pton(AF_INET, inner.c_str(), buf) == 1;
}

bool ValidDomain(std::string_view d, bool utf8) {
  if (d.empty() || d.size() > kMaxDomain) return false;
  if (d.front() == '[') return ValidAddressLiteral(d);
  if (d.back() == '.') d.remove_suffix(1);  // a fully-qualified "example.com."
  size_t label = 0;
  for (size_t i = 0; i <= d.size(); ++i) {
    if (i == d.size() || d[i] == '.') {
      if (label == 0 || label > 63) return false;
      if (d[i - 1] == '-' || d[i - label] == '-') return false;
      label = 0;
      continue;
    }
    unsigned char c = d[i];
    if (!(std::isalnum(c) || c == '-' || (utf8 && c >= 0x80))) return false;
    ++label;
  }
  return true;
}

// The local part ends at the last '@' outside a quoted string.
size_t FindAt(std::string_view mailbox) {
  bool quoted = false;
  size_t at = std::string_view::npos;
  for (size_t i = 0; i < mailbox.size(); ++i) {
    char c = mailbox[i];
    if (c == '\\' && quoted) {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == '@' && !quoted) {
      at = i;
    }
  }
  return at;
}

bool ValidMailbox(std::string_view m, bool utf8) {
  if (HasNonAscii(m) && (!utf8 || !IsValidUtf8(m))) return false;
  size_t at = FindAt(m);
  if (at == std::string_view::npos || at == 0) return false;
  std::string_view local = m.substr(0, at);
  if (local.size() > kMaxLocalPart) return false;
  bool local_ok = local.front() == '"' ? ValidQuotedString(local, utf8)
                                       : ValidDotString(local, utf8);
  return local_ok && ValidDomain(m.substr(at + 1), utf8);
}

// Drops an RFC 5321 A-d-l source route ("@a,@b:") in front of the mailbox.
bool StripSourceRoute(std::string_view* path) {
  if (path->empty() || path->front() != '@') return true;
  size_t colon = path->find(':');
  if (colon == std::string_view::npos) return false;
  std::string_view route = path->substr(0, colon);
  size_t start = 0;
  while (start < route.size()) {
    size_t comma = route.find(',', start);
    if (comma == std::string_view::npos) comma = route.size();
    std::string_view hop = route.substr(start, comma - start);
    if (hop.size() < 2 || hop[0] != '@' || !ValidDomain(hop.substr(1), false))
      return false;
    start = comma + 1;
  }
  path->remove_prefix(colon + 1);
  return true;
}

bool ParseParams(std::string_view rest, PathArgs* out) {
  while (!rest.empty()) {
    if (rest.front() != ' ') return false;
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.empty()) break;
    size_t end = rest.find(' ');
    if (end == std::string_view::npos) end = rest.size();
    std::string_view param = rest.substr(0, end);
    rest.remove_prefix(end);
    size_t eq = param.find('=');
    std::string_view key = param.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? "" : param.substr(eq + 1);
    if (key.empty() || (eq != std::string_view::npos && value.empty()))
      return false;
    for (unsigned char c : key) {
      if (!std::isalnum(c) && c != '-') return false;
    }
    for (unsigned char c : value) {
      if (c < 33 || c > 126 || c == '=') return false;
    }
    std::string upper(key);
    for (char& c : upper)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    out->params.emplace_back(std::move(upper), std::string(value));
  }
  return true;
}

}  // namespace

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    unsigned char u = c;
    out.push_back(u < 32 || u == 127 ? ' ' : c);
  }
  return out;
}

Command ParseCommand(std::string_view line) {
  static const struct {
    const char* name;
    Verb verb;
  } kVerbs[] = {
      {"HELO", Verb::kHelo},           {"EHLO", Verb::kEhlo},
      {"MAIL", Verb::kMail},           {"RCPT", Verb::kRcpt},
      {"DATA", Verb::kData},           {"RSET", Verb::kRset},
      {"NOOP", Verb::kNoop},           {"QUIT", Verb::kQuit},
      {"HELP", Verb::kHelp},           {"VRFY", Verb::kVrfy},
      {"STARTTLS", Verb::kStartTls},   {"EXPN", Verb::kNotImplemented},
      {"TURN", Verb::kNotImplemented}, {"ETRN", Verb::kNotImplemented},
      {"ATRN", Verb::kNotImplemented}, {"BDAT", Verb::kNotImplemented},
      {"AUTH", Verb::kAuth},           {"SEND", Verb::kNotImplemented},
      {"SOML", Verb::kNotImplemented}, {"SAML", Verb::kNotImplemented},
  };
  Command cmd;
  size_t sp = line.find(' ');
  std::string_view word = line.substr(0, sp);
  if (sp != std::string_view::npos) cmd.args = line.substr(sp + 1);
  for (const auto& v : kVerbs) {
    if (EqualsIgnoreCase(word, v.name)) {
      cmd.verb = v.verb;
      return cmd;
    }
  }
  cmd.verb = Verb::kUnknown;
  return cmd;
}

PathError ParsePathArgs(std::string_view args, std::string_view keyword,
                        bool allow_null, bool utf8, PathArgs* out) {
  *out = PathArgs();
  if (!StartsWithIgnoreCase(args, keyword)) return PathError::kSyntax;
  args.remove_prefix(keyword.size());
  while (!args.empty() && args.front() == ' ')
    args.remove_prefix(1);  // "FROM: <x>" is common
  if (args.empty() || args.front() != '<') return PathError::kSyntax;
  // The closing '>' is the first one outside a quoted local part.
  bool quoted = false;
  size_t close = std::string_view::npos;
  for (size_t i = 1; i < args.size(); ++i) {
    char c = args[i];
    if (c == '\\' && quoted) {
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == '>' && !quoted) {
      close = i;
      break;
    }
  }
  if (close == std::string_view::npos) return PathError::kSyntax;
  std::string_view path = args.substr(1, close - 1);
  if (!ParseParams(args.substr(close + 1), out)) return PathError::kBadParam;
  if (path.size() > kMaxPath) return PathError::kBadAddress;
  if (path.empty())
    return allow_null ? PathError::kNone : PathError::kBadAddress;
  if (!StripSourceRoute(&path)) return PathError::kBadAddress;
  if (!allow_null && EqualsIgnoreCase(path, "postmaster")) {
    out->mailbox = "postmaster";
    return PathError::kNone;
  }
  if (!ValidMailbox(path, utf8)) return PathError::kBadAddress;
  out->mailbox = std::string(path);
  return PathError::kNone;
}

bool HasNonAscii(std::string_view text) {
  return std::any_of(text.begin(), text.end(), [](char c) {
    return static_cast<unsigned char>(c) >= 0x80;
  });
}

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

bool IsValidHeloArgument(std::string_view arg) {
  if (arg.empty() || arg.size() > kMaxDomain) return false;
  if (arg.front() == '[') return ValidAddressLiteral(arg);
  // Lenient like most MTAs: any printable, space-free ASCII word is accepted,
  // because real clients send bare host names and even underscores.
  return std::all_of(arg.begin(), arg.end(), [](char c) {
    unsigned char u = c;
    return u > 32 && u < 127;
  });
}

std::string DomainOf(std::string_view mailbox) {
  size_t at = FindAt(mailbox);
  if (at == std::string_view::npos) return "";
  std::string d(mailbox.substr(at + 1));
  if (!d.empty() && d.back() == '.') d.pop_back();
  for (char& c : d)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return d;
}

std::string_view LocalPartOf(std::string_view mailbox) {
  size_t at = FindAt(mailbox);
  return at == std::string_view::npos ? mailbox : mailbox.substr(0, at);
}

}  // namespace smtpd
