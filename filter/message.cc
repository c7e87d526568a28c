// message.cc: reading and splitting a stored message (see message.h).
#include "filter/message.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "farm/ascii.h"
#include "farm/unique_fd.h"

namespace filter {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

namespace {

// A field name is printable ASCII without ':' (RFC 5322 ftext); "Name :" (the
// obsolete form with blanks before the colon) is accepted.
bool SplitField(std::string_view line, std::string_view* name,
                std::string_view* rest) {
  size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view n = line.substr(0, colon);
  while (!n.empty() && IsBlank(n.back())) n.remove_suffix(1);
  if (n.empty()) return false;
  for (unsigned char c : n) {
    if (c <= 32 || c >= 127) return false;
  }
  *name = n;
  *rest = line.substr(colon + 1);
  return true;
}

}  // namespace

std::string Message::FirstValue(std::string_view name) const {
  std::string want = farm::AsciiLower(name);
  for (const auto& h : headers) {
    if (farm::AsciiLower(h.name) == want) return h.value;
  }
  return "";
}

Message ParseMessage(std::string data) {
  Message msg;
  msg.data = std::move(data);
  std::string_view all = msg.data;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t nl = all.find('\n', pos);
    size_t next = nl == std::string_view::npos ? all.size() : nl + 1;
    std::string_view line =
        all.substr(pos, (nl == std::string_view::npos ? all.size() : nl) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      pos = next;
      break;
    }
    std::string_view name, rest;
    if (IsBlank(line.front()) && !msg.headers.empty()) {
      HeaderField& h = msg.headers.back();
      h.raw_value += "\r\n";
      h.raw_value += line;
      h.value += line;
    } else if (SplitField(line, &name, &rest)) {
      HeaderField& h = msg.headers.emplace_back();
      h.name = std::string(name);
      h.raw_value = std::string(rest);
      size_t first = rest.find_first_not_of(" \t");
      h.value = first == std::string_view::npos
                    ? ""
                    : std::string(rest.substr(first));
    } else {
      break;  // not a header: the body starts here
    }
    pos = next;
  }
  msg.body_offset = std::min(pos, all.size());
  return msg;
}

farm::StatusOr<std::string> ReadMessageRange(const std::string& path,
                                             uint64_t offset, uint64_t size) {
  farm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return farm::Status::FromErrno("open " + path, errno);
  std::string data(size, '\0');
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd.get(), data.data() + done, size - done,
                        static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return farm::Status::FromErrno("read " + path, errno);
    if (n == 0) {
      return farm::Status::Invalid(
          path + ": file ends at " + std::to_string(offset + done) +
          ", before the message's end at " + std::to_string(offset + size));
    }
    done += static_cast<uint64_t>(n);
  }
  return data;
}

std::string ExtractAddress(std::string_view value) {
  size_t lt = value.rfind('<');
  if (lt != std::string_view::npos) {
    size_t gt = value.find('>', lt);
    if (gt != std::string_view::npos)
      return std::string(value.substr(lt + 1, gt - lt - 1));
  }
  // Bare "a@b", possibly followed by a comment.
  size_t at = value.find('@');
  if (at == std::string_view::npos) return "";
  size_t start = value.find_last_of(" \t,", at);
  start = start == std::string_view::npos ? 0 : start + 1;
  size_t end = value.find_first_of(" \t,(", at);
  return std::string(
      value.substr(start, end == std::string_view::npos ? end : end - start));
}

std::string AddressDomain(std::string_view address) {
  size_t at = address.rfind('@');
  if (at == std::string_view::npos || at + 1 >= address.size()) return "";
  return farm::AsciiLower(address.substr(at + 1));
}

}  // namespace filter
