// aliases.cc: /etc/aliases-syntax parser and :include: reader (see aliases.h).
#include "router/aliases.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "farm/ascii.h"
#include "farm/unique_fd.h"

namespace router {
namespace {

constexpr size_t kMaxAliasFileBytes = 64 << 20;

bool IsBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

farm::StatusOr<AliasTarget> ClassifyTarget(std::string_view raw,
                                           const std::string& where) {
  std::string_view t = Trim(raw);
  if (t.size() >= 2 && t.front() == '"' && t.back() == '"')
    t = Trim(t.substr(1, t.size() - 2));
  auto bad = [&](const std::string& what) {
    return farm::Status::Invalid(where + ": " + what + " in target \"" +
                                 std::string(raw) + "\"");
  };
  if (t.empty()) return farm::Status::Invalid(where + ": empty target");
  if (t.front() == '|') {
    std::string_view command = Trim(t.substr(1));
    if (command.empty()) return bad("empty command");
    return AliasTarget{AliasTarget::Kind::kPipe, std::string(command)};
  }
  if (t.front() == '/')
    return AliasTarget{AliasTarget::Kind::kFile, std::string(t)};
  if (t.size() >= 9 && farm::AsciiLower(t.substr(0, 9)) == ":include:") {
    std::string_view path = Trim(t.substr(9));
    if (path.empty() || path.front() != '/')
      return bad(":include: needs an absolute path");
    return AliasTarget{AliasTarget::Kind::kInclude, std::string(path)};
  }
  if (t.front() == '\\') {
    std::string_view user = t.substr(1);
    if (user.empty() || user.find('@') != std::string_view::npos)
      return bad("bad \\user");
    return AliasTarget{AliasTarget::Kind::kMailbox, std::string(user)};
  }
  if (std::any_of(t.begin(), t.end(),
                  [](unsigned char c) { return std::isspace(c); })) {
    return bad("blank inside an address");
  }
  if (t.front() == '@' || t.back() == '@') return bad("malformed address");
  return AliasTarget{AliasTarget::Kind::kAddress, std::string(t)};
}

}  // namespace

farm::StatusOr<std::vector<AliasTarget>> ParseTargetList(
    std::string_view text, const std::string& where) {
  std::vector<AliasTarget> targets;
  bool quoted = false;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] == '"') quoted = !quoted;
    if (i < text.size() && (quoted || text[i] != ',')) continue;
    if (quoted) return farm::Status::Invalid(where + ": unbalanced quote");
    auto target = ClassifyTarget(text.substr(start, i - start), where);
    if (!target.ok()) return target.status();
    targets.push_back(std::move(target.value()));
    start = i + 1;
  }
  return targets;
}

farm::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  farm::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return farm::Status::FromErrno("open " + path, errno);
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return farm::Status::FromErrno("read " + path, errno);
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxAliasFileBytes)
      return farm::Status::Invalid(path + ": file too large");
  }
  return data;
}

farm::StatusOr<AliasTable> AliasTable::Parse(std::string_view text,
                                             const std::string& source,
                                             bool case_sensitive) {
  // Join physical lines into logical entries first (continuations), keeping the
  // line number of each entry's first line for error messages.
  struct Entry {
    int line;
    std::string text;
  };
  std::vector<Entry> entries;
  int line_no = 0;
  bool open_entry = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text =
        nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line.front() == '#') continue;
    if (Trim(line).empty()) {
      open_entry = false;
      continue;
    }
    if (IsBlank(line.front())) {
      if (!open_entry) {
        return farm::Status::Invalid(
            source + ":" + std::to_string(line_no) +
            ": continuation line without an alias before it");
      }
      entries.back().text += ' ';
      entries.back().text += Trim(line);
      continue;
    }
    entries.push_back({line_no, std::string(line)});
    open_entry = true;
  }

  AliasTable table;
  for (const Entry& entry : entries) {
    const std::string where = source + ":" + std::to_string(entry.line);
    std::string_view e = entry.text;
    size_t colon;
    if (e.front() == '"') {
      size_t close = e.find('"', 1);
      if (close == std::string_view::npos)
        return farm::Status::Invalid(where + ": unbalanced quote");
      colon = e.find(':', close);
    } else {
      colon = e.find(':');
    }
    if (colon == std::string_view::npos) {
      return farm::Status::Invalid(where + ": expected \"name: target, ...\"");
    }
    std::string_view name = Trim(e.substr(0, colon));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      name = name.substr(1, name.size() - 2);
    }
    if (name.empty())
      return farm::Status::Invalid(where + ": empty alias name");
    auto targets = ParseTargetList(e.substr(colon + 1), where);
    if (!targets.ok()) return targets.status();
    std::string key =
        case_sensitive ? std::string(name) : farm::AsciiLower(name);
    if (!table.entries_.emplace(key, std::move(targets.value())).second) {
      return farm::Status::Invalid(where + ": duplicate alias \"" +
                                   std::string(name) + "\"");
    }
  }
  return table;
}

farm::StatusOr<AliasTable> AliasTable::Load(const std::string& path,
                                            bool case_sensitive) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return text.status();
  return Parse(text.value(), path, case_sensitive);
}

const std::vector<AliasTarget>* AliasTable::Find(
    const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

farm::StatusOr<std::vector<AliasTarget>> LoadIncludeFile(
    const std::string& path) {
  auto text = ReadSmallFile(path);
  if (!text.ok()) return farm::Status::TempFail(text.status().message());
  std::vector<AliasTarget> targets;
  std::string_view rest = text.value();
  int line_no = 0;
  while (!rest.empty()) {
    size_t nl = rest.find('\n');
    std::string_view line = Trim(rest.substr(0, nl));
    rest =
        nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    if (line.back() == ',') line.remove_suffix(1);  // "a,\nb" lists
    auto parsed = ParseTargetList(line, path + ":" + std::to_string(line_no));
    if (!parsed.ok()) return parsed.status();
    for (auto& t : parsed.value()) targets.push_back(std::move(t));
  }
  return targets;
}

}  // namespace router
