// root_paths.h: the files and directories mailfarmd touches as root before it
// drops privileges (pid file, run/spool/log directories, mailbox roots), each
// opened so that no other account can redirect root to a file of its choice.
#ifndef MAILFARM_FARM_ROOT_PATHS_H_
#define MAILFARM_FARM_ROOT_PATHS_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "farm/privileges.h"
#include "farm/status.h"
#include "farm/unique_fd.h"

namespace farm {

// OK when no directory from / down to `dir` (symlinks resolved) can be
// written by an account other than root: each is owned by root, writable by
// its group only when that is group 0, and by others only when it is sticky
// and not `dir` itself (in a sticky directory nobody else can replace root's
// entry). The error names the directory and its owner.
Status CheckRootOnlyDir(const std::string& dir);

// OK when `account` can write no directory above `path` (the literal parents
// and, symlinks resolved, the real ones): so it cannot put a symlink or
// another directory where `path` is. `path` itself may be the account's.
Status CheckParentsNotWritableBy(const std::string& path,
                                 const ServiceAccount& account);

// Opens the pid file read-write, creating it 0644, without following a
// symlink and without blocking on a FIFO, and refuses anything but a regular
// file owned by this process's uid with one link. As root, its directory must
// pass CheckRootOnlyDir first.
StatusOr<UniqueFd> OpenPidFile(const std::string& path);

// Creates the missing directories of the absolute path `dir` (0755).
Status MakeDirs(const std::string& dir);

// Creates `dir` and missing parents (0755), then sets `mode` and, when
// `owner` is given, the owner, through a descriptor of `dir` opened without
// following a symlink. As root with an owner, the parents must first pass
// CheckParentsNotWritableBy(owner).
Status PrepareDir(const std::string& dir, mode_t mode,
                  const std::optional<ServiceAccount>& owner);

}  // namespace farm

#endif  // MAILFARM_FARM_ROOT_PATHS_H_
