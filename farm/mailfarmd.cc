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

#include "farm/privileges.h"
#include "farm/program.h"
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
    run_dir/mailfarmd.pid   pid file, locked while mailfarmd runs
    run_dir/*.sock          component sockets; spool_dir/ the queue
)";

// Creates `dir` and its parents; tightens the mode of the last component.
bool MakeDir(const std::string& dir, mode_t mode) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
      PLOG(ERROR) << "mkdir " << partial;
      return false;
    }
  }
  if (::chmod(dir.c_str(), mode) != 0) {
    PLOG(ERROR) << "chmod " << dir;
    return false;
  }
  return true;
}

bool Chown(const std::string& path, const farm::ServiceAccount& account) {
  if (::chown(path.c_str(), account.uid, account.gid) != 0) {
    PLOG(ERROR) << "chown " << path << " to " << account.user;
    return false;
  }
  return true;
}

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
    if (MakeDir(dir, 0755)) Chown(dir, account);
  }
}

// Locks run_dir/mailfarmd.pid; a second instance on the same run dir refuses.
farm::UniqueFd LockPidFile(const std::string& path) {
  farm::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!fd) {
    PLOG(ERROR) << "open " << path;
    std::exit(farm::kExitOsErr);
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    char buf[32] = {0};
    ssize_t n = ::pread(fd.get(), buf, sizeof(buf) - 1, 0);
    std::string pid = n > 0 ? std::string(buf, strcspn(buf, "\n")) : "?";
    std::fprintf(stderr,
                 "mailfarmd: already running (pid %s) with run dir %s\n",
                 pid.c_str(), path.substr(0, path.rfind('/')).c_str());
    std::exit(farm::kExitUnavailable);
  }
  return fd;
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
  std::string run_dir = farm::RunDir(config);
  std::string spool_dir = farm::SpoolDir(config);
  if (!MakeDir(run_dir, 0750) || !MakeDir(spool_dir, 0700))
    return farm::kExitOsErr;
  if (*account) {
    // run_dir's group is the injection group when there is one (as Postfix's
    // public/ is postdrop's): its members may reach inject.sock, nobody else
    // gets past the directory.
    farm::ServiceAccount run_owner = **account;
    auto inject_gid = farm::LookupGroup(config.identity().inject_group());
    if (inject_gid) run_owner.gid = *inject_gid;
    if (!Chown(run_dir, run_owner) || !Chown(spool_dir, **account)) {
      return farm::kExitOsErr;
    }
    // setgid: inject.sock, made by the scheduler inside, takes the
    // directory's group, so the injection group can use it (mode 0660)
    // without the service user being a member of that group.
    if (inject_gid && ::chmod(run_dir.c_str(), 02750) != 0) {
      PLOG(ERROR) << "chmod " << run_dir;
      return farm::kExitOsErr;
    }
  }
  farm::UniqueFd pid_file = LockPidFile(run_dir + "/mailfarmd.pid");
  // Bind what may need root (port 25) before giving root up.
  auto listeners = farm::BindSmtpdListeners(config);
  if (!listeners.ok()) {
    std::fprintf(stderr, "mailfarmd: %s\n",
                 listeners.status().message().c_str());
    return farm::kExitOsErr;
  }
  if (*account) {
    if (!config.paths().log_dir().empty() &&
        MakeDir(config.paths().log_dir(), 0750)) {
      Chown(config.paths().log_dir(), **account);
    }
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
    if (log_dir.empty() || !MakeDir(log_dir, 0750)) log_dir = run_dir;
    Daemonize(log_dir + "/mailfarm.log");
  }
  WritePid(pid_file.get());
  farm::Supervisor supervisor(std::move(config), config_path, bin_dir,
                              std::move(*plan), std::move(*listeners));
  int rc = supervisor.Run();
  ::unlink((run_dir + "/mailfarmd.pid").c_str());
  return rc;
}
