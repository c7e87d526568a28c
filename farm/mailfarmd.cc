// mailfarmd.cc: the mailfarm supervisor, run as the system service. Reads the
// config, prepares run/ and spool/, takes the pid-file lock and hands over to
// Supervisor (farm/supervisor.h).
#include <fcntl.h>
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "farm/inherited_key.h"
#include "farm/privileges.h"
#include "farm/program.h"
#include "farm/root_paths.h"
#include "farm/supervisor.h"
#include "farm/unique_fd.h"

DEFINE_bool(foreground, false, "Stay in the foreground and log to stderr.");
DEFINE_bool(check_config, false,
            "Check the configuration and the binaries, then exit.");

namespace {

const char kHelp[] = R"(NAME
    mailfarmd - the mailfarm supervisor (the system service)

SYNOPSIS
    mailfarmd [--config FILE] [--foreground] [--check-config]

DESCRIPTION
    mailfarmd reads the configuration, creates the run and spool directories
    with restrictive modes, and starts every mailfarm component as its own
    process group: the router and content-filter farms, one transport farm per
    configured channel, the scheduler, and the SMTP front end (mailfarm-smtpd)
    last. A component that dies is restarted with exponential backoff (from
    supervisor.restart_backoff_min_ms, doubling up to restart_backoff_max_ms,
    back to the minimum after restart_reset_after_ms of uptime). Once the
    scheduler accepts injections, mailfarmd runs mailfarm-replay once so that
    jobs left in the spool by an earlier run are delivered (supervisor.run_replay).

    Signals: SIGHUP re-reads the configuration and forwards SIGHUP to every
    component (farms restart their children gracefully, keeping their sockets).
    SIGTERM or SIGINT stops in order: front end, scheduler, then the farms, each
    within supervisor.stop_timeout_ms before it is killed.

    With NOTIFY_SOCKET set (systemd Type=notify), mailfarmd reports READY=1,
    RELOADING=1 and STOPPING=1.

OPTIONS
    --config FILE
        The configuration (default /etc/mailfarm/mailfarm.conf), a protobuf
        text file; see etc/mailfarm.conf and docs/mailfarmd.md.
    --foreground
        Do not detach; logs go to stderr. Without it mailfarmd detaches and
        appends all logs to paths.log_dir/mailfarm.log.
    --check-config
        Parse and check the configuration and that every program it needs
        exists, print "configuration OK", and exit.

EXIT STATUS
    0   orderly stop, or --check-config found no error
    69  a required program is missing, or another mailfarmd holds the run dir
    71  an operating-system error (fork, directories, pid file, binding a
        listener, dropping privileges)
    78  configuration error (the message names file:line:column), or started
        as root without identity.user

PRIVILEGES
    Started as root, mailfarmd creates run_dir (0750) and spool_dir (0700)
    owned by identity.user and identity.group, binds the smtpd listeners
    (so port 25 works), then drops to that user before starting anything:
    no mailfarm process runs as root. Started as root without identity.user
    it refuses. Started as an ordinary user it runs as that user.

FILES
    run_dir.pid             pid file (paths.pid_file), locked while
                            mailfarmd runs; as root, in a directory only
                            root can write
    run_dir/*.sock          component sockets; spool_dir/ the queue
)";

// The fixed directory above each local channel's mailbox template (var/mail/
// for "var/mail/${user}/") must be writable by the service account, which will
// create the mailboxes in it. Only a directory mailfarmd creates itself is
// handed over: an existing one (/home) is never touched.
void PrepareMailboxRoots(const farm::Config& config,
                         const farm::ServiceAccount& account) {
  for (const auto& channel : config.channel()) {
    if (channel.type() != mailfarm::config::ChannelConfig::LOCAL) continue;
    const std::string& mailbox = channel.local().mailbox();
    std::string fixed = mailbox.substr(0, mailbox.find("${"));
    std::string dir = fixed.substr(0, fixed.rfind('/'));
    struct stat st {};
    if (dir.empty() || ::stat(dir.c_str(), &st) == 0) continue;
    farm::Status made = farm::PrepareDir(dir, 0755, account);
    if (!made.ok()) LOG(ERROR) << "mailbox root: " << made.message();
  }
}

// run_dir (0750; with an injection group, setgid and that group, as Postfix's
// public/ is postdrop's: its members may reach inject.sock, nobody else gets
// past the directory) and spool_dir (0700), owned by the service account.
farm::Status PrepareRunAndSpool(
    const farm::Config& config,
    const std::optional<farm::ServiceAccount>& account) {
  std::optional<farm::ServiceAccount> run_owner = account;
  mode_t run_mode = 0750;
  if (account) {
    auto inject_gid = farm::LookupGroup(config.identity().inject_group());
    if (inject_gid) {
      run_owner->gid = *inject_gid;
      run_mode = 02750;
    }
  }
  MAILFARM_RETURN_IF_ERROR(
      farm::PrepareDir(farm::RunDir(config), run_mode, run_owner));
  return farm::PrepareDir(farm::SpoolDir(config), 0700, account);
}

// spool_dir/maildrop/ for mailfarm-postdrop (setgid `drop_gid`): mode 1730
// (the group creates files, only the owner lists or removes them), and
// spool_dir 0710 with that group so the group can reach it and nothing
// else. spool_dir belongs to the service account, so the maildrop is
// reached through fds with O_NOFOLLOW: root never follows a link the
// account could have put there.
bool PrepareMaildrop(const std::string& spool_dir,
                     const farm::ServiceAccount& account, gid_t drop_gid) {
  farm::UniqueFd spool(::open(spool_dir.c_str(),
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!spool || ::fchown(spool.get(), account.uid, drop_gid) != 0 ||
      ::fchmod(spool.get(), 0710) != 0) {
    PLOG(ERROR) << "preparing " << spool_dir << " for the maildrop group";
    return false;
  }
  if (::mkdirat(spool.get(), "maildrop", 0700) != 0 && errno != EEXIST) {
    PLOG(ERROR) << "mkdir " << spool_dir << "/maildrop";
    return false;
  }
  farm::UniqueFd drop(
      ::openat(spool.get(), "maildrop",
               O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!drop || ::fchown(drop.get(), account.uid, drop_gid) != 0 ||
      ::fchmod(drop.get(), 01730) != 0) {
    PLOG(ERROR) << "preparing " << spool_dir << "/maildrop";
    return false;
  }
  return true;
}

// Opens and locks the pid file; a second instance on the same file refuses.
// As root the file must sit in a directory only root can write: the service
// account could otherwise put a link there to a file root would truncate.
farm::UniqueFd LockPidFile(const std::string& path) {
  std::string dir = path.substr(0, path.rfind('/'));
  farm::Status safe = farm::MakeDirs(dir);
  if (safe.ok() && ::geteuid() == 0) safe = farm::CheckRootOnlyDir(dir);
  auto fd = safe.ok() ? farm::OpenPidFile(path)
                      : farm::StatusOr<farm::UniqueFd>(safe);
  if (!fd.ok()) {
    std::fprintf(stderr, "mailfarmd: pid file %s: %s (see paths.pid_file)\n",
                 path.c_str(), fd.status().message().c_str());
    LOG(ERROR) << "pid file " << path << ": " << fd.status().message();
    std::exit(farm::kExitOsErr);
  }
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    ssize_t n = ::pread(fd->get(), buf, sizeof(buf) - 1, 0);
    std::string pid = n > 0 ? std::string(buf, strcspn(buf, "\n")) : "?";
    std::fprintf(stderr, "mailfarmd: already running (pid %s), pid file %s\n",
                 pid.c_str(), path.c_str());
    std::exit(farm::kExitUnavailable);
  }
  return std::move(*fd);
}

void WritePid(int fd) {
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    PLOG(WARNING) << "writing the pid file";
  }
}

// Classic detach: fork, setsid, stdio to /dev/null and the log file.
void Daemonize(const std::string& log_file) {
  pid_t pid = ::fork();
  if (pid < 0) {
    PLOG(ERROR) << "fork";
    std::exit(farm::kExitOsErr);
  }
  if (pid > 0) ::_exit(0);
  ::setsid();
  farm::UniqueFd null(::open("/dev/null", O_RDWR));
  farm::UniqueFd log(::open(log_file.c_str(),
                            O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  ::dup2(null.get(), STDIN_FILENO);
  ::dup2(log ? log.get() : null.get(), STDOUT_FILENO);
  ::dup2(log ? log.get() : null.get(), STDERR_FILENO);
}

}  // namespace

int main(int argc, char** argv) {
  farm::InitProgram(&argc, &argv, kHelp);
  farm::Config config = farm::LoadConfigOrDie();
  std::string config_path = farm::ResolvePath(FLAGS_config);
  std::string bin_dir = farm::BinDir(config);
  auto plan = farm::PlanComponents(config, config_path, bin_dir);
  if (!plan.ok()) {
    std::fprintf(stderr, "mailfarmd: %s\n", plan.status().message().c_str());
    return farm::kExitUnavailable;
  }
  if (FLAGS_check_config) {
    std::printf("%s: configuration OK (%zu components)\n", config_path.c_str(),
                plan->size());
    return farm::kExitOk;
  }
  auto account = farm::ResolveServiceAccount(config);
  if (!account.ok()) {
    std::fprintf(stderr, "mailfarmd: %s\n", account.status().message().c_str());
    return farm::kExitConfig;
  }
  farm::Status prepared = PrepareRunAndSpool(config, *account);
  if (!prepared.ok()) {
    std::fprintf(stderr, "mailfarmd: %s\n", prepared.message().c_str());
    return farm::kExitOsErr;
  }
  if (*account) {
    auto drop_gid = farm::LookupGroup(config.identity().maildrop_group());
    if (drop_gid &&
        !PrepareMaildrop(farm::SpoolDir(config), **account, *drop_gid))
      return farm::kExitOsErr;
  }
  std::string run_dir = farm::RunDir(config);
  std::string pid_path = farm::PidFilePath(config);
  farm::UniqueFd pid_file = LockPidFile(pid_path);
  // Bind what may need root (port 25) before giving root up.
  auto listeners = farm::BindSmtpdListeners(config);
  if (!listeners.ok()) {
    std::fprintf(stderr, "mailfarmd: %s\n",
                 listeners.status().message().c_str());
    return farm::kExitOsErr;
  }
  // Read smtpd's TLS key while still root, so it may stay readable by root
  // only (Debian's snakeoil key: 0640 root:ssl-cert); smtpd gets the bytes.
  farm::UniqueFd tls_key;
  if (!listeners->empty() && !config.smtpd().tls_key_file().empty()) {
    auto key = farm::LoadKeyIntoMemfd(config.smtpd().tls_key_file());
    if (!key.ok()) {
      std::fprintf(stderr, "mailfarmd: %s\n", key.status().message().c_str());
      return farm::kExitConfig;
    }
    tls_key = std::move(*key);
  }
  if (*account) {
    // A log_dir root may not prepare (its parent is the service account's)
    // is left to the service account, which creates it after the drop.
    const std::string& log_dir = config.paths().log_dir();
    farm::Status made = log_dir.empty()
                            ? farm::Status::Ok()
                            : farm::PrepareDir(log_dir, 0750, **account);
    if (!made.ok()) LOG(WARNING) << "log_dir: " << made.message();
    PrepareMailboxRoots(config, **account);
    farm::Status dropped = farm::DropPrivileges(**account);
    if (!dropped.ok()) {
      std::fprintf(stderr, "mailfarmd: %s\n", dropped.message().c_str());
      return farm::kExitOsErr;
    }
    LOG(INFO) << "mailfarmd: running as " << (*account)->user << " (uid "
              << (*account)->uid << ", gid " << (*account)->gid << ")";
  }
  if (!FLAGS_foreground) {
    std::string log_dir = config.paths().log_dir();
    if (log_dir.empty() || !farm::PrepareDir(log_dir, 0750, {}).ok())
      log_dir = run_dir;
    Daemonize(log_dir + "/mailfarm.log");
  }
  WritePid(pid_file.get());
  farm::Supervisor supervisor(std::move(config), config_path, bin_dir,
                              std::move(*plan), std::move(*listeners));
  supervisor.SetTlsKey(std::move(tls_key));
  int rc = supervisor.Run();
  // As root's file in root's directory the pid file cannot be removed after
  // the drop; emptied through the descriptor held since, it says "stopped".
  if (::ftruncate(pid_file.get(), 0) != 0)
    PLOG(WARNING) << "ftruncate " << pid_path;
  ::unlink(pid_path.c_str());
  return rc;
}
