// spool_journal.h: the spool's write-ahead journal (spool/journal). A batch of
// new queue files is made durable by appending their bytes to the journal and
// one fdatasync of it (one sequential write, one cache flush) instead of a
// syncfs that writes back every new file, inode and directory entry. The
// queue files reach the disk later: at the next checkpoint (a syncfs, when the
// journal is full) or by the kernel's write-back. After a crash,
// FileSpoolStore::Open restores from the journal every file written since the
// last checkpoint that is missing or damaged. Used by FileSpoolStore only.
#ifndef MAILFARM_SCHEDULER_SPOOL_JOURNAL_H_
#define MAILFARM_SCHEDULER_SPOOL_JOURNAL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "scheduler/spool_env.h"

namespace mailfarm::scheduler {

// The file is a sequence of records, each `MFJ1 | crc32c | generation |
// kind | qid length | data length | qid | data`, the crc covering everything
// after it. A checkpoint starts a new generation with a record at offset 0
// (its data: the checkpoint's sequence number, which orders the spool's two
// journal files, see journal_pair.h, then the newest queue id handed out);
// reading stops at the first record that is torn, corrupt or of another
// generation, so what a reader finds is exactly what was written since the
// last checkpoint. Every write starts on a 4 KiB boundary (padding records
// fill the gaps), so a write torn by a crash never touches a sector of an
// earlier, acknowledged one.
class SpoolJournal {
 public:
  enum class Kind : uint8_t {
    kCheckpoint = 1,
    kCreate = 2,
    kRemove = 3,
    kPad = 4,
    kCancel = 5  // a create refused because its queue id names another file
  };
  struct Entry {
    Kind kind;
    std::string qid;
    std::string data;  // kCreate: the queue file as created (header + body)
  };
  // A create larger than this is made durable by syncfs instead: writing it
  // twice (file and journal) would cost more than it saves.
  static constexpr size_t kMaxFileBytes = 256 * 1024;

  // Opens (creating if missing) the journal at `path`; `entries` receives the
  // creates and removes written since the last checkpoint, in order.
  // `capacity` bounds the file's size (at least 1 MiB). Nothing can be added
  // before the caller has dealt with the entries and called Checkpoint.
  static farm::StatusOr<std::unique_ptr<SpoolJournal>> Open(
      SpoolEnv* env, const std::string& path, uint64_t capacity,
      std::vector<Entry>* entries);

  // Whether the pending records plus creates of `file_bytes` in all (`count`
  // files) still fit before the journal must be checkpointed; FitsEmpty:
  // whether they would fit right after a checkpoint.
  bool Fits(size_t file_bytes, size_t count) const;
  bool FitsEmpty(size_t file_bytes, size_t count) const;
  void AddCreate(std::string_view qid, std::string_view header,
                 std::string_view body);
  // A removal, written with the next Write or Commit: a crash after it was
  // written does not bring the job back (see FileSpoolStore's Open).
  void AddRemove(std::string_view qid);
  // A create refused after its record was written, because its queue id
  // names another job's file: recovery neither restores it nor removes that
  // file (as a removal would).
  void AddCancel(std::string_view qid);
  bool HasPending() const { return !pending_.empty(); }
  // Writes the pending records after the last ones. Commit also makes them
  // durable (fdatasync); Write leaves them to the kernel's write-back (as an
  // unlink is). On failure the pending records are dropped and nothing more
  // fits until a Checkpoint (so what the failed write left is never read).
  farm::Status Commit();
  farm::Status Write();
  // Call once every queue file and directory entry is durable (after a
  // syncfs): starts a new generation at offset 0 (synced), numbered
  // `sequence` and recording `newest_qid`, the newest queue id handed out so
  // far. Pending removals are dropped: the syncfs made them durable.
  farm::Status Checkpoint(uint64_t sequence, std::string_view newest_qid);
  // Holds nothing but its checkpoint (and can take records).
  bool Empty() const;
  // The records on disk since the last checkpoint, as Open would find them
  // now (for rewriting the files they cover after a failed syncfs), and in
  // `sequence` that checkpoint's sequence number as the file holds it (not a
  // Checkpoint's whose write failed). Read through the page cache: a
  // checkpoint written but not synced reads as done, which only a syncfs
  // that succeeded (and the rewrite) can have preceded.
  farm::StatusOr<std::vector<Entry>> ReadEntries(uint64_t* sequence);

  // Empties the file and syncs that, so that it holds nothing to recover even
  // if its removal that follows is lost (the journal being turned off).
  farm::Status Discard();

  uint64_t generation() const { return generation_; }
  // The last checkpoint's sequence number (0: none, or one written before
  // checkpoints were numbered).
  uint64_t sequence() const { return sequence_; }
  // The newest queue id the last checkpoint recorded ("" when none).
  const std::string& newest_qid() const { return newest_qid_; }
  uint64_t end() const { return end_; }

 private:
  struct Contents;
  static Contents Parse(std::string_view data);
  SpoolJournal(SpoolEnv* env, std::string path, farm::UniqueFd fd,
               uint64_t capacity);
  void AddRecord(Kind kind, std::string_view qid, std::string_view first,
                 std::string_view second);
  void GrowToCapacity();
  farm::Status WritePending(bool sync);

  SpoolEnv* env_;
  std::string path_;
  farm::UniqueFd fd_;
  uint64_t capacity_;
  uint64_t generation_ = 0;
  uint64_t sequence_ = 0;
  std::string newest_qid_;
  uint64_t end_ = 0;        // where the next write starts (4 KiB aligned)
  uint64_t file_size_ = 0;  // bytes the file holds: records, then zeros
  std::string pending_;     // encoded records not yet written
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SPOOL_JOURNAL_H_
