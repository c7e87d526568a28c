// root_paths.cc: opening mailfarmd's pid file and preparing its directories
// as root without following a path another account controls (see
// root_paths.h; mailfarmd.cc is the caller).
#include "farm/root_paths.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace farm {

namespace {

std::string Parent(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr)
    return Status::FromErrno("realpath " + path, errno);
  return std::string(buf);
}

// "/", "/a", "/a/b" for "/a/b" (an absolute path with no "." or "..").
std::vector<std::string> Prefixes(const std::string& real) {
  std::vector<std::string> out{"/"};
  for (size_t pos = 1; pos < real.size();) {
    size_t slash = real.find('/', pos);
    if (slash == std::string::npos) slash = real.size();
    out.push_back(real.substr(0, slash));
    pos = slash + 1;
  }
  return out;
}

// Calls `check` on every directory from / down to `dir`, symlinks resolved;
// `last` tells it whether the directory is `dir` itself.
Status ForEachDirDown(
    const std::string& dir,
    const std::function<Status(const std::string&, const struct stat&,
                               bool last)>& check) {
  auto real = RealPath(dir);
  if (!real.ok()) return real.status();
  std::vector<std::string> dirs = Prefixes(*real);
  for (size_t i = 0; i < dirs.size(); ++i) {
    struct stat st {};
    if (::lstat(dirs[i].c_str(), &st) != 0)
      return Status::FromErrno("lstat " + dirs[i], errno);
    MAILFARM_RETURN_IF_ERROR(check(dirs[i], st, i + 1 == dirs.size()));
  }
  return Status::Ok();
}

std::vector<gid_t> GroupsOf(const ServiceAccount& account) {
  int n = 64;
  std::vector<gid_t> groups(n);
  while (::getgrouplist(account.user.c_str(), account.gid, groups.data(), &n) <
         0) {
    groups.resize(n);
  }
  groups.resize(n);
  groups.push_back(account.gid);
  return groups;
}

// Whether `account` can add or replace entries of a directory. In a sticky
// directory above the last one it can only touch its own entries, and the
// entry on the way down is then checked in turn.
bool CanWrite(const struct stat& st, bool last, const ServiceAccount& account,
              const std::vector<gid_t>& groups) {
  if (st.st_uid == account.uid) return true;
  if ((st.st_mode & S_ISVTX) && !last) return false;
  if (st.st_mode & S_IWOTH) return true;
  if (!(st.st_mode & S_IWGRP)) return false;
  for (gid_t gid : groups)
    if (gid == st.st_gid) return true;
  return false;
}

}  // namespace

Status CheckRootOnlyDir(const std::string& dir) {
  return ForEachDirDown(
      dir, [](const std::string& path, const struct stat& st, bool last) {
        bool sticky = (st.st_mode & S_ISVTX) && !last;
        if (st.st_uid != 0 || ((st.st_mode & S_IWGRP) && st.st_gid != 0) ||
            ((st.st_mode & S_IWOTH) && !sticky)) {
          char mode[8];
          std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
          return Status::Invalid(
              path + " may be written by an account other than root (owner " +
              std::to_string(st.st_uid) + ", group " +
              std::to_string(st.st_gid) + ", mode " + mode + ")");
        }
        return Status::Ok();
      });
}

Status CheckParentsNotWritableBy(const std::string& path,
                                 const ServiceAccount& account) {
  std::vector<gid_t> groups = GroupsOf(account);
  auto check = [&](const std::string& dir, const struct stat& st, bool last) {
    if (CanWrite(st, last, account, groups)) {
      return Status::Invalid(dir + " is writable by " + account.user +
                             ", which could replace " + path +
                             " with a link: refusing to prepare it as root");
    }
    return Status::Ok();
  };
  // The literal parent (a symlink in it is the admin's, whose directory is
  // checked here) and the real one (where the symlinks lead).
  MAILFARM_RETURN_IF_ERROR(ForEachDirDown(Parent(path), check));
  auto real = RealPath(path);
  if (!real.ok()) return real.status();
  return ForEachDirDown(Parent(*real), check);
}

StatusOr<UniqueFd> OpenPidFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(),
                     O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
                     0644));
  if (!fd) return Status::FromErrno("open pid file " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return Status::FromErrno("fstat " + path, errno);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || st.st_nlink != 1) {
    return Status::Invalid("pid file " + path +
                           " is not a regular file of ours with one link: "
                           "refusing to use it");
  }
  return fd;
}

Status MakeDirs(const std::string& dir) {
  for (const std::string& partial : Prefixes(dir)) {
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
      return Status::FromErrno("mkdir " + partial, errno);
  }
  return Status::Ok();
}

Status PrepareDir(const std::string& dir, mode_t mode,
                  const std::optional<ServiceAccount>& owner) {
  MAILFARM_RETURN_IF_ERROR(MakeDirs(dir));
  if (owner && ::geteuid() == 0)
    MAILFARM_RETURN_IF_ERROR(CheckParentsNotWritableBy(dir, *owner));
  // The real path, so that an admin's symlink (/var/spool/mailfarm ->
  // /srv/spool) works; O_NOFOLLOW then refuses a link put there later.
  auto real = RealPath(dir);
  if (!real.ok()) return real.status();
  UniqueFd fd(
      ::open(real->c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return Status::FromErrno("open " + *real, errno);
  if (owner && ::geteuid() == 0 &&
      ::fchown(fd.get(), owner->uid, owner->gid) != 0) {
    return Status::FromErrno("chown " + dir + " to " + owner->user, errno);
  }
  if (::fchmod(fd.get(), mode) != 0)
    return Status::FromErrno("chmod " + dir, errno);
  return Status::Ok();
}

}  // namespace farm
