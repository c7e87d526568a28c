// fuzz_spool_journal.cc: libFuzzer target for the spool journal's reader,
// which the scheduler runs on spool/journal and spool/journal.1 at every
// start, before anything else reads the spool, and whose records it then
// writes into queue/. A file torn by a crash or damaged on disk must give the
// records that pass their checksums, never a crash, a hang or an
// out-of-bounds read. The input goes through SpoolJournal::Open on a file in
// /dev/shm, as the scheduler reads it (built with ASan/UBSan by
// cmake/fuzz.cmake).
#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "scheduler/spool_env.h"
#include "scheduler/spool_journal.h"

using mailfarm::scheduler::SpoolJournal;

namespace {

const std::string& JournalPath() {
  static const std::string path =
      "/dev/shm/mailfarm-fuzz-journal." + std::to_string(::getpid());
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = JournalPath();
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) __builtin_trap();
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) __builtin_trap();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  std::vector<SpoolJournal::Entry> entries;
  auto journal = SpoolJournal::Open(mailfarm::scheduler::PosixSpoolEnv(), path,
                                    1 << 20, &entries);
  ::unlink(path.c_str());  // nothing left in /dev/shm after the run
  if (!journal.ok()) return 0;
  size_t total = 0;
  for (const SpoolJournal::Entry& e : entries) {
    // Only creates, removals and cancels come back, each from the input.
    if (e.kind != SpoolJournal::Kind::kCreate &&
        e.kind != SpoolJournal::Kind::kRemove &&
        e.kind != SpoolJournal::Kind::kCancel)
      __builtin_trap();
    total += e.qid.size() + e.data.size();
  }
  if (total > size) __builtin_trap();
  return 0;
}
