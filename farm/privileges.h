// privileges.h: running as the configured unprivileged user. mailfarmd, started
// as root, binds what needs root (port 25), prepares the directories, then
// drops to identity.user/identity.group before it starts any component.
#ifndef MAILFARM_FARM_PRIVILEGES_H_
#define MAILFARM_FARM_PRIVILEGES_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "farm/config.h"
#include "farm/status.h"

namespace farm {

struct ServiceAccount {
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
};

// The account to run as. When the process is not root: std::nullopt (it runs
// as whoever started it). As root: identity.user (and identity.group, default
// the user's primary group); root without identity.user, or an unknown
// user/group, is an error: mailfarm never runs its processes as root.
StatusOr<std::optional<ServiceAccount>> ResolveServiceAccount(
    const Config& config);

// Sets supplementary groups (the user's, so identity.inject_group membership
// counts), gid and uid, and checks that root cannot be regained.
Status DropPrivileges(const ServiceAccount& account);

// Looks up a group by name; nullopt when unknown.
std::optional<gid_t> LookupGroup(const std::string& name);

}  // namespace farm

#endif  // MAILFARM_FARM_PRIVILEGES_H_
