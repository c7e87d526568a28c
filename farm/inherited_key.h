// inherited_key.h: hands a private key that only root may read (the TLS key
// of smtpd, e.g. Debian's /etc/ssl/private/ssl-cert-snakeoil.key) from
// mailfarmd, which reads it before dropping root, to mailfarm-smtpd, which
// runs as the service user: a sealed memfd inherited at a known fd number
// named by MAILFARM_TLS_KEY_FD, as the listeners are inherited.
#ifndef MAILFARM_FARM_INHERITED_KEY_H_
#define MAILFARM_FARM_INHERITED_KEY_H_

#include <string>

#include "farm/status.h"
#include "farm/unique_fd.h"

namespace farm {

inline constexpr char kTlsKeyFdEnv[] = "MAILFARM_TLS_KEY_FD";

// Reads the file at `path` (at most 1 MiB) into a new memfd sealed against
// writes, close-on-exec. Errors name the path.
StatusOr<UniqueFd> LoadKeyIntoMemfd(const std::string& path);

// The key fd passed by mailfarmd, or an empty fd when none was; clears the
// variable so that nothing started later takes it too.
UniqueFd TakeInheritedKey();

// The whole contents of a key fd (read from offset 0, so it can be read
// again at every reload).
StatusOr<std::string> ReadKeyFd(int fd);

}  // namespace farm

#endif  // MAILFARM_FARM_INHERITED_KEY_H_
