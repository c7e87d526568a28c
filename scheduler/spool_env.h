// spool_env.h: the file-system calls of the spool behind one small interface
// (LevelDB's Env idea), so tests can fill the disk, fail an fsync or a rename
// without touching a real device. Used by FileSpoolStore's I/O threads.
#ifndef MAILFARM_SCHEDULER_SPOOL_ENV_H_
#define MAILFARM_SCHEDULER_SPOOL_ENV_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "farm/status.h"
#include "farm/unique_fd.h"

namespace mailfarm::scheduler {

// Every method returns a Status naming the path; ENOSPC/EDQUOT come back as
// kNoSpace. Implementations must be thread-safe (several I/O threads call
// them).
class SpoolEnv {
 public:
  virtual ~SpoolEnv() = default;
  // O_WRONLY|O_CREAT|O_EXCL, mode 0600.
  virtual farm::StatusOr<farm::UniqueFd> CreateExclusive(
      const std::string& path) = 0;
  // O_WRONLY|O_APPEND of an existing file.
  virtual farm::StatusOr<farm::UniqueFd> OpenAppend(
      const std::string& path) = 0;
  // O_WRONLY of an existing file, at offset 0, nothing truncated (a spare
  // file about to be rewritten).
  virtual farm::StatusOr<farm::UniqueFd> OpenRewrite(
      const std::string& path) = 0;
  // A read-write file in `dir` with no name (O_TMPFILE; where the file
  // system lacks it, a created file unlinked at once): it goes with its last
  // descriptor, so a crash leaves nothing behind. Holds a message body while
  // it arrives.
  virtual farm::StatusOr<farm::UniqueFd> CreateAnonymous(
      const std::string& dir) = 0;
  // The file's size in bytes (stat).
  virtual farm::StatusOr<uint64_t> FileSize(const std::string& path) = 0;
  virtual farm::StatusOr<farm::UniqueFd> OpenDirectory(
      const std::string& path) = 0;
  // Writes every byte (short writes and EINTR retried).
  virtual farm::Status Write(int fd, std::string_view data,
                             const std::string& path) = 0;
  // Writes every byte at `offset` (pwrite; the file offset does not move).
  virtual farm::Status WriteAt(int fd, std::string_view data, uint64_t offset,
                               const std::string& path) = 0;
  // Writes `first` then `second` with one writev where possible (a queue
  // file's header and body: one system call instead of two).
  virtual farm::Status Write2(int fd, std::string_view first,
                              std::string_view second,
                              const std::string& path) = 0;
  // Appends the first `size` bytes of the file open as `from` (read from
  // offset 0) at `to`'s offset: copy_file_range, so the bytes stay in the
  // kernel, or read and write through a 64 KiB buffer where it is not
  // supported. Fails when `from` is shorter.
  virtual farm::Status Copy(int from, uint64_t size, int to,
                            const std::string& path) = 0;
  // Starts write-back without waiting (a hint: lets one journal commit carry a
  // whole batch). Failure is not an error; the following sync reports it.
  virtual void StartWriteback(int fd) = 0;
  virtual farm::Status DataSync(int fd,
                                const std::string& path) = 0;  // fdatasync
  virtual farm::Status Sync(
      int fd, const std::string& path) = 0;  // fsync (directories)
  // syncfs: everything written to the filesystem holding `fd` is durable
  // (one journal commit and one cache flush for a whole batch).
  virtual farm::Status SyncFilesystem(int fd, const std::string& path) = 0;
  virtual farm::Status Truncate(int fd, uint64_t size,
                                const std::string& path) = 0;
  // Renames unless `to` exists: false (and nothing renamed) when it does.
  virtual farm::StatusOr<bool> RenameNoReplace(const std::string& from,
                                               const std::string& to) = 0;
  virtual farm::Status Rename(const std::string& from,
                              const std::string& to) = 0;
  virtual farm::Status Unlink(const std::string& path) = 0;
  // mkdir; an existing directory is fine.
  virtual farm::Status MakeDirectory(const std::string& path, mode_t mode) = 0;
};

// The real file system. The returned object lives forever and is thread-safe.
SpoolEnv* PosixSpoolEnv();

// The whole of the file open as `fd` (pread from offset 0 up to its size).
farm::StatusOr<std::string> ReadWholeFile(int fd, const std::string& path);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SPOOL_ENV_H_
