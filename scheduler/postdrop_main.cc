// postdrop_main.cc: mailfarm-postdrop, the setgid helper (Postfix's postdrop)
// through which sendmail leaves a message in spool/maildrop/ when the
// scheduler's inject.sock is unreachable. The only mailfarm program with a
// privilege meant for every local user: the group of the maildrop directory
// (mode 1730), used for one thing, creating one file there.
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "farm/config.h"
#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "scheduler/maildrop_file.h"

namespace {

const char kHelp[] = R"(NAME
    mailfarm-postdrop - leave a message in the mailfarm maildrop

SYNOPSIS
    mailfarm-postdrop [--config FILE] < maildrop-record

DESCRIPTION
    Run by sendmail (mailfarm-inject) when the scheduler's inject.sock cannot
    be reached, or not by this user. Reads one maildrop record (envelope and
    message, as sendmail prepared it) on standard input, writes it to
    spool_dir/maildrop/ as a new file, makes it durable (fsync, rename,
    syncfs) and exits 0. The scheduler queues the file once it runs (at start,
    on an inotify event, or within a minute) and then removes it.

    Installed setgid to the group owning spool_dir/maildrop/ (mode 1730;
    mailfarm-drop in the Debian package), so any local user can submit while
    nobody can list, read or remove another user's file. It opens nothing
    else with that group: the config is read like any user could read it.

EXIT STATUS
    0   the message is in the maildrop, durably
    64  usage error
    65  the input is not a maildrop record, or too large
    75  the maildrop directory cannot be written (try again later)
    78  configuration error
)";

int Fail(int code, const std::string& text) {
  std::fprintf(stderr, "mailfarm-postdrop: %s\n", text.c_str());
  return code;
}

std::string RandomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (::getrandom(raw.data(), raw.size(), 0) != static_cast<ssize_t>(bytes)) {
    for (auto& b : raw) b = static_cast<unsigned char>(::random());
  }
  std::string hex;
  for (unsigned char b : raw) {
    static const char kDigits[] = "0123456789abcdef";
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

// Reads standard input, up to `limit` bytes; false when there is more.
bool ReadInput(size_t limit, std::string* out) {
  char buf[65536];
  while (true) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n == 0;
    if (out->size() + static_cast<size_t>(n) > limit) return false;
    out->append(buf, static_cast<size_t>(n));
  }
}

// Writes `record` as a new file of `dir` and makes it durable. The name
// starts with '.' until the file is whole, so the pickup never reads a part.
farm::Status Drop(int dir, const std::string& record, std::string* name) {
  std::string tmp = ".tmp." + std::to_string(::getpid()) + "." + RandomHex(8);
  farm::UniqueFd fd(
      ::openat(dir, tmp.c_str(),
               O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400));
  if (!fd) return farm::Status::FromErrno("create maildrop/" + tmp, errno);
  // 0444 whatever the umask: the scheduler reads it as "other"; the
  // directory (no access for others) keeps everybody else out.
  farm::Status s = farm::WriteFull(fd.get(), record.data(), record.size());
  if (s.ok() && ::fchmod(fd.get(), 0444) != 0)
    s = farm::Status::FromErrno("fchmod", errno);
  if (s.ok() && ::fsync(fd.get()) != 0)
    s = farm::Status::FromErrno("fsync", errno);
  *name = std::to_string(::time(nullptr)) + "." + std::to_string(::getpid()) +
          "." + RandomHex(8);
  if (s.ok() && ::renameat(dir, tmp.c_str(), dir, name->c_str()) != 0)
    s = farm::Status::FromErrno("rename into maildrop/", errno);
  // The directory cannot be opened for an fsync (the group may not read
  // it): syncfs through the file commits the rename with everything else.
  if (s.ok() && ::syncfs(fd.get()) != 0)
    s = farm::Status::FromErrno("syncfs", errno);
  if (!s.ok()) {
    ::unlinkat(dir, tmp.c_str(), 0);
    ::unlinkat(dir, name->c_str(), 0);
  }
  return s;
}

}  // namespace

// LeakSanitizer (sanitizer builds) stops the process's threads with ptrace,
// which a setgid, hence non-dumpable, process refuses: its fatal error
// would turn every successful drop into exit 1. Its documented off switch;
// the helper holds no memory past exit anyway. Unused in other builds.
extern "C" int __lsan_is_turned_off() { return 1; }

int main(int argc, char** argv) {
  std::string config_path = farm::kDefaultConfigPath;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kHelp, stdout);
      return farm::kExitOk;
    }
    if ((arg == "--config" || arg == "-C") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else {
      return Fail(farm::kExitUsage,
                  "unknown argument " + arg + " (see --help)");
    }
  }
  auto config = farm::LoadConfig(config_path);
  if (!config.ok()) return Fail(farm::kExitConfig, config.status().message());
  constexpr size_t kMaxRequestBytes = 1 << 20;
  std::string record;
  if (!ReadInput(
          config->scheduler().max_message_bytes() + kMaxRequestBytes + 16,
          &record)) {
    return Fail(farm::kExitDataErr,
                "message larger than the limit of " +
                    std::to_string(config->scheduler().max_message_bytes()) +
                    " bytes");
  }
  mailfarm::InjectRequest request;
  std::string body;
  if (farm::Status ok = mailfarm::scheduler::DecodeMaildropFile(
          record, kMaxRequestBytes, &request, &body);
      !ok.ok()) {
    return Fail(farm::kExitDataErr, "not a maildrop record: " + ok.message());
  }
  std::string path = farm::SpoolDir(*config) + "/maildrop";
  // O_PATH: the group may create files in the directory, not read it.
  farm::UniqueFd dir(::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    return Fail(farm::kExitTempFail,
                "cannot use " + path + ": " + std::strerror(errno));
  }
  std::string name;
  if (farm::Status dropped = Drop(dir.get(), record, &name); !dropped.ok())
    return Fail(farm::kExitTempFail, path + ": " + dropped.message());
  return farm::kExitOk;
}
