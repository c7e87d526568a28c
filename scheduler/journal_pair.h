// journal_pair.h: the spool's two journal files, spool/journal and
// spool/journal.1. One takes the commits while the other, full, is
// checkpointed on a side thread (a syncfs, then a new generation), so that a
// full journal no longer stops every commit for the length of a syncfs.
// Used by FileSpoolStore's committer only (one thread at a time).
#ifndef MAILFARM_SCHEDULER_JOURNAL_PAIR_H_
#define MAILFARM_SCHEDULER_JOURNAL_PAIR_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "farm/status.h"
#include "farm/unique_fd.h"
#include "scheduler/side_thread.h"
#include "scheduler/spool_env.h"
#include "scheduler/spool_journal.h"

namespace mailfarm::scheduler {

class JournalPair {
 public:
  // Opens (creating if missing) both files under `spool_dir`, each bounded by
  // `capacity`. `entries` receives the records of both written since their
  // checkpoints, in the order they were written: the file with the older
  // checkpoint first (a spool/journal from before there were two has
  // sequence 0, the oldest). Like SpoolJournal, nothing can be committed
  // before the caller has dealt with them and called CheckpointAfterSync.
  // The side thread's syncfs is called on an fd of its own, opened on
  // `spool_dir`: syncfs reports a write-back error once per open file, and
  // the committer's own syncfs (on its fd) must not take this one's.
  // `newest_qid` receives the newest queue id either file recorded or holds a
  // create for: every job in the spool has an id no greater (see
  // CheckpointAfterSync); "" when neither recorded one.
  static farm::StatusOr<std::unique_ptr<JournalPair>> Open(
      SpoolEnv* env, const std::string& spool_dir, uint64_t capacity,
      std::vector<SpoolJournal::Entry>* entries, std::string* newest_qid);
  static std::vector<std::string> Paths(const std::string& spool_dir);
  ~JournalPair();  // waits for a checkpoint still running

  // The journal taking commits.
  SpoolJournal* current() { return journals_[current_].get(); }

  // For a current journal too full for the next records: starts its
  // checkpoint on the side thread and makes the other one current. If the
  // other's own checkpoint is still running, waits for it first (counted in
  // checkpoint_waits). False, changing nothing, when the other cannot take
  // records (its checkpoint failed): the caller then makes its batch durable
  // with a syncfs and calls CheckpointAfterSync. `newest_qid`: the newest queue
  // id handed out, recorded by the checkpoint.
  bool Switch(const std::string& newest_qid);

  // Call after a syncfs the caller made (which covered every file either
  // journal holds): waits for a checkpoint still running, then starts a new
  // generation in the other journal if it holds records or failed, and then
  // in the current one, which records `newest_qid`. On the first failure it
  // stops: the current journal's removal records must outlive the older
  // creates they undo. After a failed syncfs (RewriteNeeded) it refuses
  // unless `rewritten`: the caller wrote every file the journals cover again
  // before that syncfs.
  farm::Status CheckpointAfterSync(const std::string& newest_qid,
                                   bool rewritten = false);

  // A syncfs failed (the caller's, or a side checkpoint's). The kernel marks
  // the pages whose write-back failed clean, and a later syncfs reports
  // success without writing them: the files the journals cover may then not
  // be on the disk although a syncfs "made them durable". Until the caller
  // has written them again from the journals' records (ReadEntries) and
  // synced, neither journal is checkpointed (Switch refuses too).
  void NoteFailedSync();
  bool RewriteNeeded();  // waits for a checkpoint still running
  // The records both files hold on disk, in the order they were written (as
  // Open finds them).
  farm::StatusOr<std::vector<SpoolJournal::Entry>> ReadEntries();

  // Empties both files (the journal being turned off); the caller then
  // removes them.
  farm::Status Discard();

  // A journal failed a write or a checkpoint, or a syncfs failed: it holds
  // records that only a syncfs and a checkpoint make sure are never read
  // (see Shutdown). Waits for a checkpoint still running.
  bool Damaged();

  // Checkpoints run beside the commits, and those that made a commit wait.
  uint64_t side_checkpoints() const { return side_checkpoints_.load(); }
  uint64_t checkpoint_waits() const { return checkpoint_waits_.load(); }

 private:
  JournalPair(SpoolEnv* env, std::string spool_dir, farm::UniqueFd sync_fd,
              std::array<std::unique_ptr<SpoolJournal>, 2> journals);
  // Waits for the side thread's checkpoint, if one was started; false when
  // it failed (the journal it was for then keeps its records).
  bool WaitForCheckpoint();
  // Both files' records, the one with the older checkpoint (the lower of
  // `sequences`, as the files hold them) first.
  static std::vector<SpoolJournal::Entry> InOrder(
      std::array<std::vector<SpoolJournal::Entry>, 2> found,
      std::array<uint64_t, 2> sequences);

  SpoolEnv* env_;
  std::string spool_dir_;
  farm::UniqueFd sync_fd_;
  std::array<std::unique_ptr<SpoolJournal>, 2> journals_;
  int current_ = 0;
  uint64_t sequence_ = 0;         // the highest checkpoint sequence given out
  bool checkpointing_ = false;    // the side thread has a checkpoint
  std::array<bool, 2> failed_{};  // its last checkpoint failed
  bool rewrite_needed_ = false;   // see NoteFailedSync
  std::atomic<uint64_t> side_checkpoints_{0};
  std::atomic<uint64_t> checkpoint_waits_{0};
  SideThread side_;  // last: its task uses the members above
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_JOURNAL_PAIR_H_
