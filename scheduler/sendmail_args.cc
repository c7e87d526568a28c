// sendmail_args.cc: sendmail-compatible argument and message handling.
#include "scheduler/sendmail_args.h"

#include <unistd.h>

#include <cctype>
#include <cstdio>

#include "scheduler/dsn.h"

namespace mailfarm::scheduler {

namespace {

bool IEquals(const std::string& a, const char* b) {
  size_t n = std::char_traits<char>::length(b);
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  }
  return true;
}

// Splits a header block into unfolded (name, value) pairs.
std::vector<std::pair<std::string, std::string>> Headers(
    const std::string& block) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t pos = 0;
  while (pos < block.size()) {
    size_t end = block.find("\r\n", pos);
    if (end == std::string::npos) end = block.size();
    std::string line = block.substr(pos, end - pos);
    pos = end + 2;
    if (line.empty()) break;
    if ((line[0] == ' ' || line[0] == '\t') && !out.empty()) {
      out.back().second += " " + line.substr(line.find_first_not_of(" \t"));
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string value = line.substr(colon + 1);
    size_t first = value.find_first_not_of(" \t");
    out.emplace_back(line.substr(0, colon),
                     first == std::string::npos ? "" : value.substr(first));
  }
  return out;
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// Addresses of one address-list header value.
void ParseAddressList(const std::string& value, std::vector<std::string>* out) {
  std::string current;
  int comment = 0;
  bool quoted = false, angle = false;
  std::string angle_addr;
  auto flush = [&] {
    std::string a = angle_addr.empty() ? Trim(current) : Trim(angle_addr);
    if (!a.empty()) out->push_back(a);
    current.clear();
    angle_addr.clear();
  };
  for (char c : value) {
    if (comment > 0) {
      if (c == '(') ++comment;
      if (c == ')') --comment;
      continue;
    }
    if (quoted) {
      if (c == '"') quoted = false;
      continue;  // display names are not addresses
    }
    if (angle) {
      if (c == '>') {
        angle = false;
      } else {
        angle_addr += c;
      }
      continue;
    }
    switch (c) {
      case '(':
        ++comment;
        break;
      case '"':
        quoted = true;
        break;
      case '<':
        angle = true;
        angle_addr.clear();
        break;
      case ':':
        current.clear();
        break;  // "group: a@b, c@d;"
      case ',':
      case ';':
        flush();
        break;
      default:
        current += c;
    }
  }
  flush();
  // A bare display name without an address ("undisclosed-recipients") is not
  // one.
  for (auto it = out->begin(); it != out->end();) {
    if (it->find(' ') != std::string::npos) {
      it = out->erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace

std::string ParseSendmailArgs(const std::vector<std::string>& args,
                              SendmailOptions* out) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](size_t prefix, std::string* dst) -> bool {
      if (a.size() > prefix) {
        *dst = a.substr(prefix);
        return true;
      }
      if (i + 1 >= args.size()) return false;
      *dst = args[++i];
      return true;
    };
    if (a == "--") {
      for (++i; i < args.size(); ++i) out->recipients.push_back(args[i]);
      break;
    }
    if (a == "--help" || a == "-h") {
      out->help = true;
    } else if (a == "--config" || a == "-C") {
      if (i + 1 >= args.size()) return a + " needs a file name";
      out->config_path = args[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      out->config_path = a.substr(9);
    } else if (a.rfind("-f", 0) == 0 || a.rfind("-r", 0) == 0) {
      if (!value(2, &out->sender)) return a + " needs an address";
      out->sender_given = true;
    } else if (a.rfind("-F", 0) == 0) {
      if (!value(2, &out->full_name)) return "-F needs a name";
    } else if (a == "-t") {
      out->recipients_from_headers = true;
    } else if (a == "-i" || a == "-oi") {
      out->ignore_dots = true;
    } else if (a.rfind("-o", 0) == 0 || a.rfind("-d", 0) == 0 || a == "-v" ||
               a == "-n" || a == "-U" || a == "-bm" || a == "-em" ||
               a == "-ep" || a == "-eq") {
      // Delivery-mode, error-mode and other sendmail knobs: meaningless here.
    } else if (a == "-B" || a == "-N" || a == "-R" || a == "-V" || a == "-X" ||
               a == "-L") {
      if (i + 1 >= args.size()) return a + " needs a value";
      ++i;  // takes a value we do not use
    } else if (a.rfind("-B", 0) == 0 || a.rfind("-N", 0) == 0 ||
               a.rfind("-R", 0) == 0 || a.rfind("-V", 0) == 0) {
    } else if (a.rfind("-b", 0) == 0) {
      return "mode " + a +
             " is not supported (only -bm, the default: read a message)";
    } else if (!a.empty() && a[0] == '-') {
      return "unknown option " + a;
    } else {
      out->recipients.push_back(a);
    }
  }
  return "";
}

std::string NormalizeMessage(const std::string& input, bool ignore_dots) {
  std::string out;
  out.reserve(input.size() + input.size() / 32 + 2);
  size_t pos = 0;
  while (pos < input.size()) {
    size_t nl = input.find('\n', pos);
    size_t end = nl == std::string::npos ? input.size() : nl;
    size_t content_end = end > pos && input[end - 1] == '\r' ? end - 1 : end;
    std::string_view line(input.data() + pos, content_end - pos);
    if (!ignore_dots && line == ".") break;
    out.append(line);
    out += "\r\n";
    pos = nl == std::string::npos ? input.size() : nl + 1;
  }
  return out;
}

std::vector<std::string> HeaderRecipients(const std::string& message) {
  std::vector<std::string> out;
  for (const auto& [name, value] :
       Headers(HeaderBlock(message, message.size()))) {
    if (IEquals(name, "to") || IEquals(name, "cc") || IEquals(name, "bcc")) {
      ParseAddressList(value, &out);
    }
  }
  return out;
}

std::string Qualify(const std::string& address, const std::string& hostname) {
  if (address.empty() || address.find('@') != std::string::npos) return address;
  return address + "@" + hostname;
}

std::string CompleteHeaders(const std::string& message,
                            const std::string& sender,
                            const std::string& full_name,
                            const std::string& hostname,
                            const std::string& user, int64_t now_unix_ms) {
  std::string block = HeaderBlock(message, message.size());
  // A message that starts with a body line (no header) gets all headers added.
  bool has_headers = !Headers(block).empty();
  if (!has_headers) block.clear();
  std::string body = message.substr(block.size());
  bool from = false, date = false, message_id = false;
  std::string kept;
  size_t pos = 0;
  bool skipping = false;
  while (pos < block.size()) {
    size_t end = block.find("\r\n", pos);
    if (end == std::string::npos) end = block.size();
    std::string line = block.substr(pos, end - pos);
    pos = end + 2;
    bool continuation = !line.empty() && (line[0] == ' ' || line[0] == '\t');
    if (!continuation) {
      std::string name = line.substr(0, line.find(':'));
      skipping = IEquals(name, "bcc");
      from |= IEquals(name, "from");
      date |= IEquals(name, "date");
      message_id |= IEquals(name, "message-id");
    }
    if (!skipping && !line.empty()) kept += line + "\r\n";
  }
  std::string added = "Received: by " + hostname + " (mailfarm-inject, uid " +
                      std::to_string(::getuid()) + ");\r\n\t" +
                      Rfc5322Date(now_unix_ms) + "\r\n";
  if (!from) {
    std::string address = sender.empty() ? user + "@" + hostname : sender;
    added += "From: " + (full_name.empty() ? "" : "\"" + full_name + "\" ") +
             "<" + address + ">\r\n";
  }
  if (!date) added += "Date: " + Rfc5322Date(now_unix_ms) + "\r\n";
  if (!message_id) {
    char id[64];
    std::snprintf(id, sizeof id, "%llx.%d",
                  static_cast<unsigned long long>(now_unix_ms), ::getpid());
    added += "Message-ID: <" + std::string(id) + "@" + hostname + ">\r\n";
  }
  if (!has_headers) return added + "\r\n" + body;
  return added + kept + body;
}

}  // namespace mailfarm::scheduler
