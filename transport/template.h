// template.h: ${name} expansion for the local mailbox path and the pipe argv,
// and the address helpers both need. Used by local_transport and
// pipe_transport.
#ifndef MAILFARM_TRANSPORT_TEMPLATE_H_
#define MAILFARM_TRANSPORT_TEMPLATE_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace transport {

using TemplateVars = std::map<std::string, std::string, std::less<>>;

// Replaces every "${name}" in `tmpl` with vars[name]. "$$" is a literal "$";
// any other "$" is kept as is. An unknown name or an unterminated "${" is
// kInvalid naming it (a configuration error, found at the first job).
farm::StatusOr<std::string> ExpandTemplate(std::string_view tmpl,
                                           const TemplateVars& vars);

// True when `tmpl` mentions ${name}.
bool TemplateUses(std::string_view tmpl, std::string_view name);

// Splits an alias's "|command" text into argv without a shell: words are
// separated by blanks; '...' is literal; "..." allows \" and \\; a backslash
// outside quotes escapes the next character. kInvalid for an unterminated
// quote or no words at all.
farm::StatusOr<std::vector<std::string>> SplitCommand(std::string_view command);

// Splits "local@domain" at the last '@'. No '@': all of it is the local part.
struct AddressParts {
  std::string local;
  std::string domain;
};
AddressParts SplitAddress(std::string_view address);

// True when `component` may be used as one path component: not empty, not
// "." or "..", no '/', no NUL and no control characters. A recipient's local
// part goes into a mailbox path only when this holds.
bool SafePathComponent(std::string_view component);

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_TEMPLATE_H_
