// ascii.h: ASCII case folding for mail names (domains, queue selectors,
// session keys, header names), which compare without regard to case. Used by
// the scheduler, the router's tables and the filter's header and DKIM code.
#ifndef MAILFARM_FARM_ASCII_H_
#define MAILFARM_FARM_ASCII_H_

#include <string>
#include <string_view>

namespace farm {

// `s` with A-Z turned into a-z; every other byte (UTF-8 included) as it is.
inline std::string AsciiLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace farm

#endif  // MAILFARM_FARM_ASCII_H_
