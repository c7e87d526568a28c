// message.h: the filter's read-only view of a queued message: the byte range
// of the queue file named by the Job, split into header fields and body.
// Used by the rule engine, the scanner hook and the DKIM signer.
#ifndef MAILFARM_FILTER_MESSAGE_H_
#define MAILFARM_FILTER_MESSAGE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace filter {

struct HeaderField {
  std::string name;       // as written, without the colon or blanks before it
  std::string raw_value;  // everything after the colon, folding CRLFs kept, no
                          // final CRLF
  std::string value;  // unfolded: line breaks removed, leading blanks trimmed
};

// A message as stored (CRLF line endings). Owns its bytes.
struct Message {
  std::string data;                  // the whole stored message
  std::vector<HeaderField> headers;  // in order
  size_t body_offset = 0;            // data[body_offset..] is the body

  std::string_view body() const {
    return std::string_view(data).substr(body_offset);
  }
  // Value of the first header named `name` (any case), or "" when absent.
  std::string FirstValue(std::string_view name) const;
};

// Splits `data` into header fields and body. The header section ends at the
// first empty line (the body starts after it) or at the first line that is
// neither a field nor a continuation (the body starts at that line), as
// RFC 5322 readers do. Accepts bare LF line ends too.
Message ParseMessage(std::string data);

// Reads [offset, offset + size) of `path` with pread. Fails with kInvalid when
// the file is shorter than that, and with the errno text otherwise.
farm::StatusOr<std::string> ReadMessageRange(const std::string& path,
                                             uint64_t offset, uint64_t size);

// The address inside a From:-style value ("Name <a@b>" or "a@b (c)"), or "".
std::string ExtractAddress(std::string_view value);
// Lower-cased domain of an address, or "".
std::string AddressDomain(std::string_view address);
// Space or tab (RFC 5322 WSP), which header parsing and DKIM
// canonicalisation both need (lower-casing is farm::AsciiLower).
bool IsBlank(char c);

}  // namespace filter

#endif  // MAILFARM_FILTER_MESSAGE_H_
