// privileges.cc: user and group lookup and the privilege drop.
#include "farm/privileges.h"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace farm {

std::optional<gid_t> LookupGroup(const std::string& name) {
  std::vector<char> buf(16384);
  group grp{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &found) != 0 ||
      !found) {
    return std::nullopt;
  }
  return found->gr_gid;
}

StatusOr<std::optional<ServiceAccount>> ResolveServiceAccount(
    const Config& config) {
  if (::geteuid() != 0) return std::optional<ServiceAccount>();
  const auto& identity = config.identity();
  if (identity.user().empty()) {
    return Status::Invalid(
        "started as root but identity.user is not set: refusing to run mail "
        "processes as "
        "root (set identity { user: \"mailfarm\" group: \"mailfarm\" })");
  }
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(identity.user().c_str(), &pw, buf.data(), buf.size(),
                   &found) != 0 ||
      !found) {
    return Status::Invalid("identity.user \"" + identity.user() +
                           "\" is not a known user");
  }
  if (found->pw_uid == 0) {
    return Status::Invalid("identity.user \"" + identity.user() + "\" is root");
  }
  ServiceAccount account{identity.user(), found->pw_uid, found->pw_gid};
  if (!identity.group().empty()) {
    auto gid = LookupGroup(identity.group());
    if (!gid)
      return Status::Invalid("identity.group \"" + identity.group() +
                             "\" is unknown");
    account.gid = *gid;
  }
  if (!identity.inject_group().empty() &&
      !LookupGroup(identity.inject_group())) {
    return Status::Invalid("identity.inject_group \"" +
                           identity.inject_group() + "\" is unknown");
  }
  if (!identity.maildrop_group().empty() &&
      !LookupGroup(identity.maildrop_group())) {
    return Status::Invalid("identity.maildrop_group \"" +
                           identity.maildrop_group() + "\" is unknown");
  }
  return std::optional<ServiceAccount>(account);
}

Status DropPrivileges(const ServiceAccount& account) {
  if (::initgroups(account.user.c_str(), account.gid) != 0) {
    return Status::FromErrno("initgroups " + account.user, errno);
  }
  if (::setgid(account.gid) != 0) return Status::FromErrno("setgid", errno);
  if (::setuid(account.uid) != 0) return Status::FromErrno("setuid", errno);
  // Paranoia, as Postfix does: make sure the drop cannot be undone.
  if (::setuid(0) == 0)
    return Status::Error("could regain root after dropping privileges");
  return Status::Ok();
}

}  // namespace farm
