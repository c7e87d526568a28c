// aliases.h: parser for aliases files in the /etc/aliases syntax and for the
// :include: files they name. Used by RecipientResolver to expand local names.
// Syntax: `name: target, target, ...`; `#` comment lines; a line starting with
// a blank continues the previous one; targets are addresses, "|command",
// /path/file, :include:/path, or \user (a mailbox, no further alias lookup).
#ifndef MAILFARM_ROUTER_ALIASES_H_
#define MAILFARM_ROUTER_ALIASES_H_

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "farm/status.h"

namespace router {

struct AliasTarget {
  enum class Kind {
    kAddress,  // "user" or "user@domain": resolved again (aliases, routes)
    kMailbox,  // "\user": the local mailbox itself, no alias lookup
    kPipe,     // "|command": value is the command without the '|'
    kFile,     // "/path/file": append to that file
    kInclude,  // ":include:/path": more targets read from that file
  };
  Kind kind;
  std::string value;
};

// Splits a target list ("a, b, \"|cmd x, y\"") on the commas outside quotes and
// classifies each target. `where` prefixes error messages ("file:line").
// Fails on an empty target, an unbalanced quote or a relative :include: path.
farm::StatusOr<std::vector<AliasTarget>> ParseTargetList(
    std::string_view text, const std::string& where);

// Immutable after Parse; safe to share between threads.
class AliasTable {
 public:
  // Parses aliases-file text. `source` names it in errors ("path:line: what").
  // Names are lower-cased unless `case_sensitive`. Fails on a line without
  // "name:", an empty name or target list, a bad target, or a duplicate name.
  static farm::StatusOr<AliasTable> Parse(std::string_view text,
                                          const std::string& source,
                                          bool case_sensitive);
  // Reads and parses `path`; a read error is a kError Status naming the path.
  static farm::StatusOr<AliasTable> Load(const std::string& path,
                                         bool case_sensitive);

  // Targets of `name` (already normalised by the caller), or nullptr.
  const std::vector<AliasTarget>* Find(const std::string& name) const;
  size_t size() const { return entries_.size(); }
  // Every entry, for checks over the whole table (unordered).
  const std::unordered_map<std::string, std::vector<AliasTarget>>& entries()
      const {
    return entries_;
  }

 private:
  std::unordered_map<std::string, std::vector<AliasTarget>> entries_;
};

// Reads an :include: file: targets separated by commas or newlines, '#'
// comment lines. Missing or unreadable file -> kTempFail (the operator may be
// fixing it), bad syntax -> kInvalid.
farm::StatusOr<std::vector<AliasTarget>> LoadIncludeFile(
    const std::string& path);

// Reads a whole file (errors name the path).
farm::StatusOr<std::string> ReadSmallFile(const std::string& path);

}  // namespace router

#endif  // MAILFARM_ROUTER_ALIASES_H_
