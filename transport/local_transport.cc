// local_transport.cc: Maildir and mbox delivery (see local_transport.h).
#include "transport/local_transport.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "farm/clock.h"
#include "farm/config.h"
#include "farm/sockets.h"
#include "farm/unique_fd.h"
#include "transport/line_encoder.h"
#include "transport/template.h"

namespace transport {

namespace {

constexpr size_t kWriteBytes = 256 * 1024;

// Maps a failed system call to a recipient outcome. Problems an operator or a
// retry can fix are deferred; a path that can never work is bounced.
RecipientOutcome ErrnoOutcome(const std::string& what, int err) {
  RecipientOutcome out;
  out.text = what + ": " + strerror(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
      out.outcome = mailfarm::OUTCOME_TEMPFAIL;
      out.dsn = "4.2.2";
      out.text = "mailbox full: " + out.text;
      break;
    case ENOTDIR:
    case EISDIR:
    case ELOOP:
      out.outcome = mailfarm::OUTCOME_PERMFAIL;
      out.dsn = "5.2.0";
      break;
    case ENAMETOOLONG:
      out.outcome = mailfarm::OUTCOME_PERMFAIL;
      out.dsn = "5.1.3";
      break;
    default:
      out.outcome = mailfarm::OUTCOME_TEMPFAIL;
      out.dsn = "4.2.0";
      break;
  }
  return out;
}

RecipientOutcome Fail(mailfarm::Outcome outcome, const std::string& dsn,
                      const std::string& text) {
  return RecipientOutcome{outcome, dsn, text};
}

// mkdir -p with `mode`; errno of the first failure, 0 on success.
int MakeDirs(const std::string& path, mode_t mode) {
  std::string partial;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    partial = path.substr(0, slash);
    pos = slash + 1;
    if (partial.empty()) continue;
    if (::mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) return errno;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  return 0;
}

int FsyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  farm::UniqueFd owned(fd);
  if (::fsync(fd) != 0) return errno;
  return 0;
}

// Streams prefix + message through `mode`'s encoding into `fd`.
farm::Status WriteEncoded(int fd, LineEncoder::Mode mode,
                          const std::string& prefix,
                          const MessageReader& message) {
  LineEncoder encoder(mode);
  std::string out;
  out.reserve(kWriteBytes + kWriteBytes / 8);
  encoder.Feed(prefix, &out);
  MAILFARM_RETURN_IF_ERROR(
      message.ForEachChunk([&](std::string_view chunk) -> farm::Status {
        encoder.Feed(chunk, &out);
        if (out.size() >= kWriteBytes) {
          MAILFARM_RETURN_IF_ERROR(farm::WriteFull(fd, out.data(), out.size()));
          out.clear();
        }
        return farm::Status::Ok();
      }));
  encoder.Finish(&out);
  return farm::WriteFull(fd, out.data(), out.size());
}

// Maildir file names must not contain '/' or ':' (Maildir's own escapes).
std::string MaildirHost(const std::string& host) {
  std::string out;
  for (char c : host) {
    if (c == '/') {
      out += "\\057";
    } else if (c == ':') {
      out += "\\072";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UniqueName(const std::string& host) {
  static unsigned counter = 0;
  timeval tv;
  gettimeofday(&tv, nullptr);
  return std::to_string(tv.tv_sec) + ".M" + std::to_string(tv.tv_usec) + "P" +
         std::to_string(::getpid()) + "Q" + std::to_string(++counter) + "." +
         MaildirHost(host);
}

// Maps the Status of a failed write of `path` (no errno left) to an outcome.
RecipientOutcome WriteOutcome(const std::string& path,
                              const farm::Status& status) {
  std::string text = "cannot write " + path + ": " + status.message();
  if (status.code() == farm::Status::Code::kNoSpace) {
    return Fail(mailfarm::OUTCOME_TEMPFAIL, "4.2.2", "mailbox full: " + text);
  }
  return Fail(mailfarm::OUTCOME_TEMPFAIL, "4.2.0", text);
}

// Takes an fcntl write lock on `fd`, polling until `timeout_ms` passes.
bool LockWithTimeout(int fd, int timeout_ms) {
  int64_t deadline = farm::RealClock()->MonotonicMs() + timeout_ms;
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  while (true) {
    if (::fcntl(fd, F_SETLK, &lock) == 0) return true;
    if (errno != EACCES && errno != EAGAIN && errno != EINTR) return false;
    if (farm::RealClock()->MonotonicMs() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// The uid of the system account `user`, when there is one.
std::optional<uid_t> AccountUid(const std::string& user) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 ||
      found == nullptr) {
    return std::nullopt;
  }
  return found->pw_uid;
}

}  // namespace

RecipientOutcome DeliverMaildir(const std::string& dir, bool create,
                                const std::string& prefix,
                                const MessageReader& message,
                                const std::string& unique_host) {
  std::string base = dir;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  struct stat st;
  if (::stat(base.c_str(), &st) != 0) {
    int err = errno;
    if (err != ENOENT) return ErrnoOutcome("cannot access mailbox " + dir, err);
    if (!create) {
      return Fail(mailfarm::OUTCOME_PERMFAIL, "5.1.1",
                  "mailbox " + dir + " does not exist");
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return Fail(mailfarm::OUTCOME_PERMFAIL, "5.2.0",
                "mailbox " + dir + " is not a directory");
  }
  bool created = false;
  for (const char* sub : {"tmp", "new", "cur"}) {
    std::string path = base + "/" + sub;
    if (::access(path.c_str(), F_OK) == 0) continue;
    int err = create ? MakeDirs(path, 0700) : ENOENT;
    if (err == ENOENT && !create) {
      return Fail(mailfarm::OUTCOME_PERMFAIL, "5.2.0",
                  "mailbox " + dir + " is not a Maildir (no " + sub + "/)");
    }
    if (err != 0) return ErrnoOutcome("cannot create Maildir " + path, err);
    created = true;
  }
  if (created) {
    // A new Maildir must survive a crash too: its entries and its own name.
    size_t slash = base.rfind('/');
    std::string parent = slash == std::string::npos ? "."
                         : slash == 0               ? "/"
                                                    : base.substr(0, slash);
    int err = FsyncDir(base);
    if (err == 0) err = FsyncDir(parent);
    if (err != 0) return ErrnoOutcome("fsync new Maildir " + dir, err);
  }
  std::string name = UniqueName(unique_host);
  std::string tmp_path = base + "/tmp/" + name;
  std::string new_path = base + "/new/" + name;
  int fd = ::open(tmp_path.c_str(),
                  O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoOutcome("cannot create " + tmp_path, errno);
  farm::UniqueFd file(fd);
  farm::Status written =
      WriteEncoded(fd, LineEncoder::Mode::kUnix, prefix, message);
  if (!written.ok()) {
    ::unlink(tmp_path.c_str());
    return WriteOutcome(tmp_path, written);
  }
  if (::fsync(fd) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return ErrnoOutcome("fsync " + tmp_path, err);
  }
  file.Reset();
  if (::rename(tmp_path.c_str(), new_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return ErrnoOutcome("cannot move " + tmp_path + " to new/", err);
  }
  int err = FsyncDir(base + "/new");
  if (err != 0) return ErrnoOutcome("fsync " + base + "/new", err);
  return Fail(mailfarm::OUTCOME_OK, "2.0.0",
              "delivered to maildir " + dir + " (" + name + ")");
}

RecipientOutcome DeliverMbox(const std::string& path, bool create,
                             const std::string& sender,
                             const std::string& prefix,
                             const MessageReader& message, int lock_timeout_ms,
                             std::optional<uid_t> owner_uid) {
  if (create) {
    size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      int err = MakeDirs(path.substr(0, slash), 0700);
      if (err != 0) {
        return ErrnoOutcome("cannot create the directory of mailbox " + path,
                            err);
      }
    }
  }
  int flags = O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  if (create) flags |= O_CREAT;
  int fd = ::open(path.c_str(), flags, 0600);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT && !create) {
      return Fail(mailfarm::OUTCOME_PERMFAIL, "5.1.1",
                  "mailbox " + path + " does not exist");
    }
    return ErrnoOutcome("cannot open mailbox " + path, err);
  }
  farm::UniqueFd file(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoOutcome("fstat " + path, errno);
  if (!S_ISREG(st.st_mode)) {
    return Fail(mailfarm::OUTCOME_PERMFAIL, "5.2.0",
                "mailbox " + path + " is not a regular file");
  }
  // Postfix local(8)'s rules: a second link could be another user's file
  // (or /etc/shadow) linked into a writable mail directory.
  if (st.st_nlink != 1) {
    return Fail(mailfarm::OUTCOME_PERMFAIL, "5.2.0",
                "mailbox " + path + " has " + std::to_string(st.st_nlink) +
                    " hard links: refusing to deliver to it");
  }
  if (st.st_uid != ::geteuid() && (!owner_uid || st.st_uid != *owner_uid)) {
    return Fail(mailfarm::OUTCOME_PERMFAIL, "5.2.0",
                "mailbox " + path + " is owned by uid " +
                    std::to_string(st.st_uid) +
                    ", neither the recipient nor the mail system");
  }
  farm::SetNonBlocking(fd, false);
  if (!LockWithTimeout(fd, lock_timeout_ms)) {
    return Fail(mailfarm::OUTCOME_TEMPFAIL, "4.2.0",
                "mailbox " + path + " is locked (fcntl) by another process");
  }
  if (::fstat(fd, &st) != 0) return ErrnoOutcome("fstat " + path, errno);
  off_t old_size = st.st_size;
  time_t now = time(nullptr);
  char date[64];
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm);
  std::string from_line =
      "From " + (sender.empty() ? std::string("MAILER-DAEMON") : sender) + " " +
      date + "\n";
  for (char& c : from_line) {
    if (c == '\r' || (c == '\n' && &c != &from_line.back())) c = ' ';
  }
  farm::Status s = farm::WriteFull(fd, from_line.data(), from_line.size());
  if (s.ok()) s = WriteEncoded(fd, LineEncoder::Mode::kMbox, prefix, message);
  if (s.ok())
    s = farm::WriteFull(fd, "\n", 1);  // the blank line before the next From_
  if (s.ok() && ::fsync(fd) != 0)
    s = farm::Status::FromErrno("fsync " + path, errno);
  if (!s.ok()) {
    // Leave no partial message behind for the next reader.
    if (::ftruncate(fd, old_size) != 0) {
      PLOG(ERROR) << "cannot cut mailbox " << path << " back to " << old_size
                  << " bytes after a failed delivery";
    }
    return WriteOutcome(path, s);
  }
  return Fail(mailfarm::OUTCOME_OK, "2.0.0", "delivered to mailbox " + path);
}

LocalTransport::LocalTransport(const mailfarm::config::ChannelConfig& channel,
                               std::string hostname)
    : config_(channel.local()), hostname_(std::move(hostname)) {}

RecipientOutcome LocalTransport::DeliverOne(
    const mailfarm::Job& job, const mailfarm::JobRecipient& recipient,
    const MessageReader& message, std::string* where) {
  AddressParts parts = SplitAddress(recipient.address());
  if (!SafePathComponent(parts.local) ||
      (!parts.domain.empty() && !SafePathComponent(parts.domain))) {
    return Fail(mailfarm::OUTCOME_PERMFAIL, "5.1.3",
                "unsafe mailbox name \"" + parts.local +
                    "\": it would leave the mailbox directory");
  }
  std::string mailbox;
  if (!job.nexthop().empty()) {
    // An alias's "/path" target (the router's file_channel route): that file
    // (mbox) or, with a trailing '/', that Maildir, for every recipient.
    if (job.nexthop()[0] != '/') {
      return Fail(mailfarm::OUTCOME_TEMPFAIL, "4.3.5",
                  "alias file target \"" + job.nexthop() +
                      "\" is not an absolute path");
    }
    mailbox = job.nexthop();
  } else {
    TemplateVars vars{{"user", parts.local},
                      {"domain", parts.domain},
                      {"recipient", recipient.address()}};
    auto path = ExpandTemplate(config_.mailbox(), vars);
    if (!path.ok()) {
      // A configuration error: defer so that fixing the config delivers it.
      return Fail(mailfarm::OUTCOME_TEMPFAIL, "4.3.5",
                  "bad local mailbox template: " + path.status().message());
    }
    mailbox = farm::ResolvePath(*path);
  }
  *where = mailbox;
  std::string prefix =
      MessagePrefix(job, hostname_, TraceKind::kLocal, &recipient);
  if (!mailbox.empty() && mailbox.back() == '/') {
    return DeliverMaildir(mailbox, config_.create_mailbox(), prefix, message,
                          hostname_);
  }
  return DeliverMbox(mailbox, config_.create_mailbox(), job.sender(), prefix,
                     message, static_cast<int>(config_.lock_timeout_ms()),
                     AccountUid(parts.local));
}

void LocalTransport::Handle(const mailfarm::Job& job,
                            mailfarm::Result* result) {
  DeliveryReport report(job, result);
  auto message = MessageReader::Open(job);
  if (!message.ok()) {
    report.AddAll(mailfarm::OUTCOME_TEMPFAIL, "4.3.0",
                  message.status().message(), "local");
    report.Finish();
    return;
  }
  for (const mailfarm::JobRecipient& recipient : job.recipients()) {
    std::string where;
    RecipientOutcome out = DeliverOne(job, recipient, *message, &where);
    report.Add(recipient, out.outcome, out.dsn, out.text, "local");
  }
  report.Finish();
}

}  // namespace transport
