// maildrop_pickup.cc: scans spool/maildrop/ on its own thread and queues each
// file through the loop, removing it only once the queue has it durably.
#include "scheduler/maildrop_pickup.h"

#include <dirent.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <future>
#include <vector>

#include "scheduler/maildrop_file.h"

namespace mailfarm::scheduler {

namespace {

constexpr int kRescanMs = 60'000;  // Postfix's pickup also wakes every minute
// A postdrop that died mid-write leaves a ".tmp." file; removed after a day.
constexpr time_t kStaleTempSeconds = 24 * 3600;
constexpr size_t kMaxRequestBytes = 1 << 20;

// The names in `dir` (not "." or ".."), read from a dup so the fd's position
// and the caller's fd stay untouched.
std::vector<std::string> ListNames(int dir) {
  std::vector<std::string> names;
  int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    PLOG(WARNING) << "maildrop: cannot list the directory";
    return names;
  }
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return names;
  }
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(std::move(name));
  }
  ::closedir(d);
  return names;
}

farm::Status ReadAll(int fd, size_t size, std::string* out) {
  out->resize(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, out->data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return farm::Status::FromErrno("read", errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out->resize(done);
  return farm::Status::Ok();
}

}  // namespace

MaildropPickup::MaildropPickup(std::string spool_dir, QueueManager* queue,
                               LoopTasks* tasks, InjectLimits limits)
    : spool_dir_(std::move(spool_dir)),
      queue_(queue),
      tasks_(tasks),
      limits_(std::move(limits)) {}

MaildropPickup::~MaildropPickup() { Stop(); }

farm::Status MaildropPickup::Start() {
  std::string path = spool_dir_ + "/maildrop";
  // 1730: the group (mailfarm-postdrop's, given by mailfarmd) may create
  // files, nobody but the owner may list or remove them. Made by mailfarmd
  // when started as root; here when missing (an unprivileged run).
  if (::mkdir(path.c_str(), 01730) != 0 && errno != EEXIST)
    return farm::Status::FromErrno("mkdir " + path, errno);
  dir_.Reset(
      ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_) return farm::Status::FromErrno("open " + path, errno);
  std::string corrupt = spool_dir_ + "/corrupt";
  corrupt_.Reset(
      ::open(corrupt.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!corrupt_) return farm::Status::FromErrno("open " + corrupt, errno);
  inotify_.Reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify_) return farm::Status::FromErrno("inotify_init1", errno);
  // A finished postdrop renames its file into place: IN_MOVED_TO.
  if (::inotify_add_watch(inotify_.get(), path.c_str(),
                          IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
    return farm::Status::FromErrno("inotify_add_watch " + path, errno);
  }
  wake_.Reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_) return farm::Status::FromErrno("eventfd", errno);
  thread_ = std::thread([this] { Run(); });
  return farm::Status::Ok();
}

void MaildropPickup::Stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof(one));
  thread_.join();
}

void MaildropPickup::Run() {
  while (!stopping_) {
    ScanOnce();
    pollfd fds[2] = {{inotify_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    int ready = ::poll(fds, 2, kRescanMs);
    if (ready < 0 && errno != EINTR) {
      PLOG(ERROR) << "maildrop: poll";
      return;
    }
    // Drain the events: any of them means "scan again".
    char buf[4096];
    while (::read(inotify_.get(), buf, sizeof(buf)) > 0) {
    }
  }
}

void MaildropPickup::ScanOnce() {
  for (const std::string& name : ListNames(dir_.get())) {
    if (stopping_) return;
    if (name[0] == '.') {
      // A postdrop still writing, or one that died: removed when stale.
      struct stat st {};
      if (::fstatat(dir_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          st.st_mtime + kStaleTempSeconds < ::time(nullptr)) {
        LOG(WARNING) << "maildrop: removing stale temporary file " << name;
        ::unlinkat(dir_.get(), name.c_str(), 0);
      }
      continue;
    }
    PickUp(name);
  }
}

void MaildropPickup::PickUp(const std::string& name) {
  // O_NONBLOCK: a FIFO must not hang the pickup; O_NOFOLLOW: no symlink.
  farm::UniqueFd fd(::openat(dir_.get(), name.c_str(),
                             O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return;  // gone meanwhile
    if (errno == ELOOP) return Quarantine(name, "a symbolic link");
    PLOG(WARNING) << "maildrop: open " << name;
    return;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return;
  if (!S_ISREG(st.st_mode)) return Quarantine(name, "not a regular file");
  const uint64_t limit =
      limits_.max_message_bytes + kMaxRequestBytes + 16;  // magic, varint
  if (static_cast<uint64_t>(st.st_size) > limit) {
    return Quarantine(name, std::to_string(st.st_size) +
                                " bytes, more than any message may have");
  }
  std::string file;
  if (farm::Status read = ReadAll(fd.get(), st.st_size, &file); !read.ok()) {
    LOG(WARNING) << "maildrop: " << name << ": " << read.message();
    return;
  }
  InjectRequest request;
  std::string body;
  if (farm::Status decoded =
          DecodeMaildropFile(file, kMaxRequestBytes, &request, &body);
      !decoded.ok()) {
    return Quarantine(name, decoded.message());
  }
  if (auto refusal = CheckInjectRequest(request, limits_)) {
    return Quarantine(name, refusal->dsn + " " + refusal->text);
  }
  // The sender of record is the file's owner: postdrop runs as the user.
  farm::PeerCred owner;
  owner.uid = st.st_uid;
  owner.gid = st.st_gid;
  spool::Envelope envelope = EnvelopeFromRequest(request, owner);
  envelope.mutable_client()->set_protocol("maildrop");
  auto qid = InjectOnLoop(std::move(envelope), std::move(body));
  if (!qid.ok()) {
    LOG(WARNING) << "maildrop: " << name << " from uid " << st.st_uid
                 << " not queued, kept for the next scan: "
                 << qid.status().message();
    return;
  }
  // Durable in the queue: only now may the maildrop copy go. A crash
  // between the two delivers the message twice (at-least-once), never zero.
  if (::unlinkat(dir_.get(), name.c_str(), 0) != 0)
    PLOG(ERROR) << "maildrop: unlink " << name << " (queued as " << *qid << ")";
  LOG(INFO) << *qid << ": uid=" << st.st_uid << " from=<" << request.sender()
            << "> (maildrop " << name << ")";
}

farm::StatusOr<std::string> MaildropPickup::InjectOnLoop(
    spool::Envelope envelope, std::string body) {
  auto done = std::make_shared<std::promise<farm::StatusOr<std::string>>>();
  std::future<farm::StatusOr<std::string>> result = done->get_future();
  tasks_->Post([this, done, envelope = std::move(envelope),
                body = std::move(body)]() mutable {
    envelope.set_arrival_unix_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count());
    queue_->Inject(std::move(envelope), std::move(body),
                   [done](farm::StatusOr<std::string> qid) {
                     done->set_value(std::move(qid));
                   });
  });
  // The loop answers once the message is durable; a stop meanwhile leaves
  // the file for the next start.
  while (result.wait_for(std::chrono::milliseconds(100)) !=
         std::future_status::ready) {
    if (stopping_)
      return farm::Status::TempFail("scheduler stopping before the commit");
  }
  return result.get();
}

void MaildropPickup::Quarantine(const std::string& name,
                                const std::string& why) {
  std::string target = "maildrop." + name;
  if (::renameat(dir_.get(), name.c_str(), corrupt_.get(), target.c_str()) !=
      0) {
    PLOG(ERROR) << "maildrop: " << name << " is unusable (" << why
                << ") and could not be moved to corrupt/";
    return;
  }
  LOG(WARNING) << "maildrop: quarantined " << name << " to corrupt/" << target
               << ": " << why;
}

}  // namespace mailfarm::scheduler
