// spool_store.h: the scheduler's durable queue storage. SpoolStore is the
// interface the queue logic sees (another backend could replace the file
// tree); FileSpoolStore keeps spool/queue/<hash>/<qid>, spool/tmp/ and
// spool/corrupt/ and spool/spare/, with an I/O thread pool that batches syncs
// (group commit): per batch of creates, one syncfs, renames done before it so
// that it covers the directory entries too.
#ifndef MAILFARM_SCHEDULER_SPOOL_STORE_H_
#define MAILFARM_SCHEDULER_SPOOL_STORE_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "farm/clock.h"
#include "farm/status.h"
#include "farm/unique_fd.h"
#include "scheduler/journal_pair.h"
#include "scheduler/loop_tasks.h"
#include "scheduler/queue_id.h"
#include "scheduler/side_thread.h"
#include "scheduler/spool_env.h"
#include "scheduler/spool_file.h"
#include "scheduler/spool_journal.h"
#include "spool.pb.h"

namespace mailfarm::scheduler {

// Every method is called from the loop thread and returns at once; `done`
// runs later on the loop thread. No method blocks on the disk.
//
// The durability rule:
// - Create's `done` reports success only once the file's bytes, its inode and
//   its directory entry in queue/<hash>/ are on stable storage. That is when
//   the scheduler sends "accepted" (SMTP 250): an acknowledged message is
//   never lost.
// - A new file may appear in queue/ before it is durable (it is renamed there
//   before the batch's sync, see FileSpoolStore). A crash in that window can
//   leave it whole (it is then replayed and delivered, although its sender got
//   no 250 and will likely send it again: at-least-once) or torn (replay
//   quarantines it; it was never acknowledged). Nothing else in the store
//   treats such a file as a job before its create has completed.
// - A new file may be a spare one (a removed job's file, kept in spool/spare/)
//   rewritten in place. A crash before the sync can leave it in queue/ under
//   the new qid with some or all of the old job's bytes; every reader checks
//   that the envelope's qid equals the file's name, and the checksums, so it
//   is recognised as never acknowledged (replay quarantines it).
// - AppendState's `done` runs once the record is on stable storage.
// - Remove is not durable: a removal lost in a power cut brings the file back,
//   and the job is delivered again (at-least-once; Postfix does not sync
//   removals either). A removed file is renamed into spool/spare/ for reuse
//   (or unlinked when spare/ is full).
// A message body written to disk as it arrives, so that the scheduler never
// holds a large message whole in memory (SpoolStore::AppendSpill): an
// unnamed file in spool/tmp/ (CreateAnonymous), gone with its last
// descriptor, so a crash leaves nothing behind. Its bytes are copied after
// the queue file's header by CreateFromSpill, whose durable commit is the
// same as Create's. Shared between the loop thread (which only holds it) and
// the I/O thread running its one outstanding operation.
struct BodySpill {
  farm::UniqueFd fd;    // opened by the first append
  uint64_t size = 0;    // bytes appended so far
  uint32_t crc32c = 0;  // of those bytes
};

class SpoolStore {
 public:
  struct Created {
    std::string qid;
    std::string path;
    uint64_t body_offset = 0;
  };
  using CreateDone = std::function<void(farm::StatusOr<Created>)>;
  using StatusDone = std::function<void(farm::Status)>;
  using ReadDone = std::function<void(farm::StatusOr<QueueFile>)>;

  virtual ~SpoolStore() = default;

  // Assigns a qid (envelope.qid is overwritten) and makes the message durable:
  // `done` gets the qid only once the file and its directory entry are on
  // stable storage. On failure nothing is left behind (kNoSpace on a full
  // disk).
  virtual void Create(spool::Envelope envelope, std::string body,
                      CreateDone done) = 0;
  // The same for a body in `spill` (see BodySpill); the store lets go of the
  // spill (and its file) on an I/O thread once done. REQUIRES: no
  // AppendSpill of it outstanding.
  virtual void CreateFromSpill(spool::Envelope envelope,
                               std::shared_ptr<BodySpill> spill,
                               CreateDone done) = 0;
  // Appends `data` to the spill's file (made by the first call) on an I/O
  // thread, extending its size and checksum; `done` runs on the loop thread
  // (kNoSpace on a full disk). Not synced: nothing is acknowledged before
  // CreateFromSpill's commit. REQUIRES: no other AppendSpill of the same
  // spill outstanding.
  virtual void AppendSpill(std::shared_ptr<BodySpill> spill, std::string data,
                           StatusDone done) = 0;
  // Lets go of a spill that will not be created (its file's blocks are freed
  // on an I/O thread, not the loop's).
  virtual void DropSpill(std::shared_ptr<BodySpill> spill) = 0;
  // Durably appends a state record before `done` runs. When truncate_to > 0 the
  // file is first cut to that length (dropping a torn record found at adopt).
  virtual void AppendState(const std::string& qid, const spool::JobState& state,
                           uint64_t truncate_to, StatusDone done) = 0;
  // Whether Remove may keep the file for a later Create to rewrite. Only a
  // file no other process can still have open may be kept: a farm child
  // abandoned mid-job (timed out, its connection closed) or a child of an
  // earlier scheduler run could go on reading it by its open descriptor and
  // would then read another message's bytes.
  enum class Reuse { kAllowed, kNever };
  // Removes the job's file from queue/; `done` runs once it is gone. The
  // removal is not synced (see the durability rule above).
  virtual void Remove(const std::string& qid, Reuse reuse, StatusDone done) = 0;
  // Reads and validates a queue file (the body checksum is skipped: replay did
  // it). A read of a file whose Create has not completed yet runs after that
  // completion (an adopt racing an injection finds the job already known).
  virtual void Read(const std::string& path, ReadDone done) = 0;
  // Moves a file to spool/corrupt/.
  virtual void Quarantine(const std::string& path, StatusDone done) = 0;
  // Runs `work` on an I/O thread (e.g. building a DSN from the message file),
  // then `done` on the loop thread.
  virtual void RunBackground(std::function<void()> work,
                             std::function<void()> done) = 0;
  virtual std::string PathOf(const std::string& qid) const = 0;
};

struct GroupCommitStats {
  uint64_t batches = 0;     // batches that made at least one file durable
  uint64_t files = 0;       // files created
  uint64_t reused = 0;      // of those, written into a spare file
  uint64_t data_syncs = 0;  // fdatasync calls
  uint64_t fs_syncs = 0;    // syncfs calls (one per batch of two or more)
  uint64_t dir_syncs = 0;   // directory fsync calls
  uint64_t max_batch = 0;
  uint64_t failures = 0;
  uint64_t journal_syncs = 0;  // batches made durable by the journal
  uint64_t checkpoints = 0;    // journal checkpoints (one syncfs each)
  // Of those, run beside the commits (when a journal filled), and the
  // commits that had to wait for one (the other journal filled first).
  uint64_t side_checkpoints = 0;
  uint64_t checkpoint_waits = 0;
  uint64_t restored = 0;    // files restored from the journal at open
  uint64_t re_removed = 0;  // removed jobs' files removed again at open
};

class FileSpoolStore : public SpoolStore {
 public:
  struct Options {
    std::string spool_dir;
    int io_threads = 2;
    size_t max_batch = 256;
    SpoolEnv* env = nullptr;       // nullptr: PosixSpoolEnv()
    farm::Clock* clock = nullptr;  // nullptr: RealClock(); stamps qids
    // A batch of at least this many writes is made durable with one syncfs of
    // the spool's filesystem (one journal commit and one device cache flush,
    // directory entries included) instead of one fdatasync per file plus an
    // fsync per directory that gained an entry (a cache flush each). 1, the
    // default, uses it for a single file too: measured on the shared 2-core
    // VM (ext4 on virtio, bench/inject/sync_probe.py), one new file cost a
    // median 4.1 ms with syncfs against 8.0 ms with fdatasync + directory
    // fsync while the disk was busy (each flush ~4 ms), and 0.75 ms against
    // 0.68 ms when it was quiet. 0 disables syncfs.
    size_t syncfs_min_batch = 1;
    // How many removed queue files spool/spare/ keeps to be rewritten by later
    // creates, and the largest file kept. Rewriting a spare file instead of
    // creating one skips allocating an inode, and removing a job becomes a
    // rename instead of freeing one: measured on the shared 2-core VM (ext4
    // without a journal, where each new inode is found by a scan past the
    // recently freed ones), a batch of 32 new 5 KB files cost a median 5.4-
    // 10.4 ms to create, rename and syncfs against 3.7-4.1 ms with spare files
    // (bench/inject/README.md). 0 unlinks removed files.
    size_t spare_files = 1024;
    uint64_t spare_max_bytes = 64 * 1024;
    // The write-ahead journal's size (spool/journal, see spool_journal.h); 0
    // makes every batch durable with syncfs. With it, a batch of new files
    // costs one sequential write and one fdatasync: on the shared VM a commit
    // of 32 new 5 KB files took 3.8 ms against 8.6 ms with syncfs
    // (bench/inject/sync_probe.py), and bench/e2e's 1-session rate went from
    // 523-606 to 925-949 msgs/s.
    uint64_t journal_bytes = 0;
  };

  // Creates the tree (spool 0750, subdirectories 0700), takes the exclusive
  // lock on spool/lock (failing with a message naming the holder's pid when
  // another scheduler has it), removes leftovers in spool/tmp/ (the lock proves
  // nobody is writing them) and starts the I/O threads. `tasks` must outlive
  // the store.
  static farm::StatusOr<std::unique_ptr<FileSpoolStore>> Open(
      const Options& options, LoopTasks* tasks);
  // Joins the I/O threads after finishing every queued operation.
  ~FileSpoolStore() override;

  void Create(spool::Envelope envelope, std::string body,
              CreateDone done) override;
  void CreateFromSpill(spool::Envelope envelope,
                       std::shared_ptr<BodySpill> spill,
                       CreateDone done) override;
  void AppendSpill(std::shared_ptr<BodySpill> spill, std::string data,
                   StatusDone done) override;
  void DropSpill(std::shared_ptr<BodySpill> spill) override;
  void AppendState(const std::string& qid, const spool::JobState& state,
                   uint64_t truncate_to, StatusDone done) override;
  void Remove(const std::string& qid, Reuse reuse, StatusDone done) override;
  void Read(const std::string& path, ReadDone done) override;
  void Quarantine(const std::string& path, StatusDone done) override;
  void RunBackground(std::function<void()> work,
                     std::function<void()> done) override;
  std::string PathOf(const std::string& qid) const override;

  // Stops taking work, finishes what is queued and joins the threads.
  // Completions already posted still run on the loop. Idempotent.
  void Shutdown();
  GroupCommitStats stats();
  // Operations queued or running (for tests and stats).
  size_t pending();

 private:
  struct Op;
  FileSpoolStore(Options options, LoopTasks* tasks, farm::UniqueFd lock_fd,
                 std::map<std::string, farm::UniqueFd> queue_dirs,
                 std::unique_ptr<JournalPair> journals,
                 GroupCommitStats recovered);
  void Submit(std::unique_ptr<Op> op);
  void SubmitCreate(spool::Envelope envelope, std::string body,
                    std::shared_ptr<BodySpill> spill, CreateDone done);
  void WorkerLoop();
  void RunBatch(std::vector<std::unique_ptr<Op>>& batch, bool commits);
  void PrepareCreate(Op& op);
  void WriteOne(Op& op);
  void WriteSpill(Op& op);
  void RenameAndUnlink(std::vector<std::unique_ptr<Op>>& batch);
  void RemoveOne(Op& op);
  farm::Status RewriteJournaledFiles();
  void DropSpares();
  bool StartJournalCommit(std::vector<std::unique_ptr<Op>>& batch);
  bool RoomInJournal(size_t file_bytes, size_t count);
  bool FinishJournalCommit(std::vector<std::unique_ptr<Op>>& batch,
                           GroupCommitStats* stats);
  // retry_reported: the caller's own writes are done with (removal records,
  // the voiding of refused creates), so a failed syncfs is called once more
  // (see the definition).
  farm::Status SyncAll(GroupCommitStats* stats, bool retry_reported = false);
  void WriteRemovals(GroupCommitStats* stats, bool sync = false);
  void SyncBatch(std::vector<std::unique_ptr<Op>>& batch, size_t writes,
                 GroupCommitStats* stats);
  void FinishCreate(Op& op);  // loop thread
  static void Finish(Op& op);

  Options options_;
  SpoolEnv* env_;
  farm::Clock* clock_;
  LoopTasks* tasks_;
  farm::UniqueFd lock_fd_;  // also the fd syncfs is called on
  // queue/<hash> directories by path, open for their fsyncs; read-only after
  // construction.
  const std::map<std::string, farm::UniqueFd> queue_dirs_;
  QueueIdGenerator ids_;
  // Paths in spool/spare/ ready to be rewritten; only the committer (one
  // thread at a time, handed over under mu_) touches it.
  std::vector<std::string> spares_;
  // Committer only, like spares_; nullptr without a journal.
  std::unique_ptr<JournalPair> journals_;
  // Committer only: the qids removed in this batch, journaled after its
  // commit.
  std::vector<std::string> removed_;
  // Committer only: the qids of journaled creates refused because another
  // file has their name (a removal record would remove that file).
  std::vector<std::string> cancelled_;
  // Runs a batch's journal commit while the committer writes its files;
  // nullptr without a journal.
  std::unique_ptr<SideThread> journal_commit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Op>> queue_;  // guarded by mu_
  size_t running_ = 0;                     // guarded by mu_
  size_t background_queued_ = 0;  // queued non-commit ops; guarded by mu_
  bool committing_ = false;  // a thread runs a commit batch; guarded by mu_
  bool stopping_ = false;    // guarded by mu_
  GroupCommitStats stats_;   // guarded by mu_
  std::vector<std::thread> threads_;
  // Loop thread only: qids whose Create has not completed, with the reads of
  // their file that wait for it.
  std::map<std::string, std::vector<std::unique_ptr<Op>>> unacknowledged_;
  std::shared_ptr<bool> alive_;  // completions posted after ~FileSpoolStore
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SPOOL_STORE_H_
