// spool_env.cc: the POSIX SpoolEnv, one system call a method.
#include "scheduler/spool_env.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

namespace mailfarm::scheduler {

namespace {

class PosixEnv : public SpoolEnv {
 public:
  farm::StatusOr<farm::UniqueFd> CreateExclusive(
      const std::string& path) override {
    return Open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, "create ");
  }
  farm::StatusOr<farm::UniqueFd> OpenAppend(const std::string& path) override {
    return Open(path, O_WRONLY | O_APPEND | O_CLOEXEC, "open ");
  }
  farm::StatusOr<farm::UniqueFd> OpenRewrite(const std::string& path) override {
    return Open(path, O_WRONLY | O_CLOEXEC, "open ");
  }
  farm::StatusOr<farm::UniqueFd> CreateAnonymous(
      const std::string& dir) override {
    farm::UniqueFd fd(
        ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC | O_EXCL, 0600));
    if (fd) return fd;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      return farm::Status::FromErrno("create a file in " + dir, errno);
    // No O_TMPFILE here: a name of our own, unlinked at once (only the
    // scheduler holding the spool lock writes in tmp/).
    static std::atomic<uint64_t> serial{0};
    std::string path = dir + "/anon." + std::to_string(::getpid()) + "." +
                       std::to_string(++serial);
    auto named = Open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, "create ");
    if (named.ok()) ::unlink(path.c_str());
    return named;
  }
  farm::StatusOr<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return farm::Status::FromErrno("stat " + path, errno);
    return static_cast<uint64_t>(st.st_size);
  }
  farm::StatusOr<farm::UniqueFd> OpenDirectory(
      const std::string& path) override {
    return Open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, "open directory ");
  }
  farm::Status Write(int fd, std::string_view data,
                     const std::string& path) override {
    while (!data.empty()) {
      ssize_t n = ::write(fd, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return farm::Status::FromErrno("write " + path, errno);
      data.remove_prefix(static_cast<size_t>(n));
    }
    return farm::Status::Ok();
  }
  farm::Status WriteAt(int fd, std::string_view data, uint64_t offset,
                       const std::string& path) override {
    while (!data.empty()) {
      ssize_t n =
          ::pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return farm::Status::FromErrno("write " + path, errno);
      data.remove_prefix(static_cast<size_t>(n));
      offset += static_cast<uint64_t>(n);
    }
    return farm::Status::Ok();
  }
  farm::Status Write2(int fd, std::string_view first, std::string_view second,
                      const std::string& path) override {
    while (!first.empty()) {
      iovec iov[2] = {{const_cast<char*>(first.data()), first.size()},
                      {const_cast<char*>(second.data()), second.size()}};
      ssize_t n = ::writev(fd, iov, 2);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return farm::Status::FromErrno("write " + path, errno);
      size_t done = static_cast<size_t>(n);
      size_t from_first = std::min(done, first.size());
      first.remove_prefix(from_first);
      second.remove_prefix(done - from_first);
    }
    return Write(fd, second, path);
  }
  farm::Status Copy(int from, uint64_t size, int to,
                    const std::string& path) override {
    loff_t offset = 0;
    bool in_kernel = true;
    std::string buffer;
    while (static_cast<uint64_t>(offset) < size) {
      size_t want = static_cast<size_t>(
          std::min<uint64_t>(size - static_cast<uint64_t>(offset), 1 << 30));
      ssize_t n = -1;
      if (in_kernel) {
        n = ::copy_file_range(from, &offset, to, nullptr, want, 0);
        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                      errno == EOPNOTSUPP)) {
          in_kernel = false;
          continue;
        }
      } else {
        buffer.resize(64 * 1024);
        n = ::pread(from, buffer.data(), std::min(want, buffer.size()), offset);
        if (n > 0) {
          MAILFARM_RETURN_IF_ERROR(
              Write(to, std::string_view(buffer.data(), static_cast<size_t>(n)),
                    path));
          offset += n;
        }
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return farm::Status::FromErrno("copy into " + path, errno);
      if (n == 0)
        return farm::Status::Error("copy into " + path +
                                   ": the message body's file is short");
    }
    return farm::Status::Ok();
  }
  void StartWriteback(int fd) override {
    ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  }
  farm::Status DataSync(int fd, const std::string& path) override {
    if (::fdatasync(fd) != 0)
      return farm::Status::FromErrno("fdatasync " + path, errno);
    return farm::Status::Ok();
  }
  farm::Status Sync(int fd, const std::string& path) override {
    if (::fsync(fd) != 0)
      return farm::Status::FromErrno("fsync " + path, errno);
    return farm::Status::Ok();
  }
  farm::Status SyncFilesystem(int fd, const std::string& path) override {
    if (::syncfs(fd) != 0)
      return farm::Status::FromErrno("syncfs " + path, errno);
    return farm::Status::Ok();
  }
  farm::Status Truncate(int fd, uint64_t size,
                        const std::string& path) override {
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      return farm::Status::FromErrno("truncate " + path, errno);
    }
    return farm::Status::Ok();
  }
  farm::StatusOr<bool> RenameNoReplace(const std::string& from,
                                       const std::string& to) override {
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(),
                    RENAME_NOREPLACE) != 0) {
      if (errno == EEXIST) return false;
      return farm::Status::FromErrno("rename " + from + " to " + to, errno);
    }
    return true;
  }
  farm::Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return farm::Status::FromErrno("rename " + from + " to " + to, errno);
    }
    return farm::Status::Ok();
  }
  farm::Status Unlink(const std::string& path) override {
    if (::unlink(path.c_str()) != 0)
      return farm::Status::FromErrno("unlink " + path, errno);
    return farm::Status::Ok();
  }
  farm::Status MakeDirectory(const std::string& path, mode_t mode) override {
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
      return farm::Status::FromErrno("mkdir " + path, errno);
    }
    return farm::Status::Ok();
  }

 private:
  static farm::StatusOr<farm::UniqueFd> Open(const std::string& path, int flags,
                                             const char* what) {
    farm::UniqueFd fd(::open(path.c_str(), flags, 0600));
    if (!fd) return farm::Status::FromErrno(what + path, errno);
    return fd;
  }
};

}  // namespace

farm::StatusOr<std::string> ReadWholeFile(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0)
    return farm::Status::FromErrno("stat " + path, errno);
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pread(fd, data.data() + done, data.size() - done,
                        static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return farm::Status::FromErrno("read " + path, errno);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  data.resize(done);
  return data;
}

SpoolEnv* PosixSpoolEnv() {
  static PosixEnv* env =
      new PosixEnv();  // stateless; never destroyed on purpose
  return env;
}

}  // namespace mailfarm::scheduler
