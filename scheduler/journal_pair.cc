// journal_pair.cc: which of the two journal files takes commits, and the
// checkpoint of the other beside them (see journal_pair.h).
#include "scheduler/journal_pair.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

namespace mailfarm::scheduler {

std::vector<std::string> JournalPair::Paths(const std::string& spool_dir) {
  return {spool_dir + "/journal", spool_dir + "/journal.1"};
}

farm::StatusOr<std::unique_ptr<JournalPair>> JournalPair::Open(
    SpoolEnv* env, const std::string& spool_dir, uint64_t capacity,
    std::vector<SpoolJournal::Entry>* entries, std::string* newest_qid) {
  auto sync_fd = env->OpenDirectory(spool_dir);
  if (!sync_fd.ok()) return sync_fd.status();
  std::array<std::unique_ptr<SpoolJournal>, 2> journals;
  std::array<std::vector<SpoolJournal::Entry>, 2> found;
  std::vector<std::string> paths = Paths(spool_dir);
  for (int i = 0; i < 2; ++i) {
    auto opened = SpoolJournal::Open(env, paths[i], capacity, &found[i]);
    if (!opened.ok()) return opened.status();
    journals[i] = std::move(*opened);
  }
  std::unique_ptr<JournalPair> pair(new JournalPair(
      env, spool_dir, std::move(*sync_fd), std::move(journals)));
  *entries = InOrder(std::move(found), {pair->journals_[0]->sequence(),
                                        pair->journals_[1]->sequence()});
  *newest_qid = std::max(pair->journals_[0]->newest_qid(),
                         pair->journals_[1]->newest_qid());
  for (const auto& e : *entries) {
    if (e.kind == SpoolJournal::Kind::kCreate)
      *newest_qid = std::max(*newest_qid, e.qid);
  }
  pair->sequence_ =
      std::max(pair->journals_[0]->sequence(), pair->journals_[1]->sequence());
  return pair;
}

std::vector<SpoolJournal::Entry> JournalPair::InOrder(
    std::array<std::vector<SpoolJournal::Entry>, 2> found,
    std::array<uint64_t, 2> sequences) {
  int older = sequences[0] <= sequences[1] ? 0 : 1;
  std::vector<SpoolJournal::Entry> entries = std::move(found[older]);
  for (auto& e : found[1 - older]) entries.push_back(std::move(e));
  return entries;
}

farm::StatusOr<std::vector<SpoolJournal::Entry>> JournalPair::ReadEntries() {
  (void)WaitForCheckpoint();
  std::array<std::vector<SpoolJournal::Entry>, 2> found;
  std::array<uint64_t, 2> sequences{};
  for (int i = 0; i < 2; ++i) {
    auto read = journals_[i]->ReadEntries(&sequences[i]);
    if (!read.ok()) return read.status();
    found[i] = std::move(*read);
  }
  return InOrder(std::move(found), sequences);
}

void JournalPair::NoteFailedSync() { rewrite_needed_ = true; }

bool JournalPair::RewriteNeeded() {
  (void)WaitForCheckpoint();
  return rewrite_needed_;
}

JournalPair::JournalPair(SpoolEnv* env, std::string spool_dir,
                         farm::UniqueFd sync_fd,
                         std::array<std::unique_ptr<SpoolJournal>, 2> journals)
    : env_(env),
      spool_dir_(std::move(spool_dir)),
      sync_fd_(std::move(sync_fd)),
      journals_(std::move(journals)) {}

JournalPair::~JournalPair() { (void)WaitForCheckpoint(); }

bool JournalPair::WaitForCheckpoint() {
  if (!checkpointing_) return true;
  checkpointing_ = false;
  farm::Status status = side_.Wait();
  int other = 1 - current_;
  failed_[other] = !status.ok();
  if (!status.ok()) {
    rewrite_needed_ = true;  // its syncfs may be what failed: NoteFailedSync
    LOG(WARNING) << "spool journal: checkpoint of " << Paths(spool_dir_)[other]
                 << " failed: " << status.message()
                 << "; the next batch is made durable with syncfs";
  }
  return status.ok();
}

bool JournalPair::Switch(const std::string& newest_qid) {
  if (checkpointing_ && side_.Running()) ++checkpoint_waits_;
  if (!WaitForCheckpoint() || rewrite_needed_) return false;
  int other = 1 - current_;
  if (failed_[other] || !journals_[other]->Empty()) return false;
  // Recovery reads the two in the order of their checkpoints' sequence
  // numbers: the one taking the records from now on must be the newer.
  // (One small synced write per switch.)
  farm::Status renewed = journals_[other]->Checkpoint(++sequence_, newest_qid);
  if (!renewed.ok()) {
    failed_[other] = true;
    LOG(WARNING) << "spool journal: " << renewed.message();
    return false;
  }
  SpoolJournal* full = current();
  // What it still has pending goes with it: its checkpoint's syncfs makes it
  // durable, and after the checkpoint nothing of it needs to be.
  if (full->HasPending() && full->generation() != 0) (void)full->Write();
  uint64_t sequence = ++sequence_;
  current_ = other;
  checkpointing_ = true;
  side_.Start([this, full, sequence, newest_qid] {
    // Every file the full journal holds a create for was renamed into
    // queue/ before this syncfs began, by the batches that journaled them.
    MAILFARM_RETURN_IF_ERROR(env_->SyncFilesystem(sync_fd_.get(), spool_dir_));
    MAILFARM_RETURN_IF_ERROR(full->Checkpoint(sequence, newest_qid));
    ++side_checkpoints_;
    return farm::Status::Ok();
  });
  return true;
}

farm::Status JournalPair::CheckpointAfterSync(const std::string& newest_qid,
                                              bool rewritten) {
  (void)WaitForCheckpoint();
  if (rewrite_needed_ && !rewritten)
    return farm::Status::Error(
        "spool journal: not checkpointed: a syncfs failed since its files "
        "were written, and they have not been written again");
  rewrite_needed_ = false;
  for (int i : {1 - current_, current_}) {
    SpoolJournal* journal = journals_[i].get();
    if (i != current_ && journal->Empty() && !failed_[i]) continue;
    farm::Status status = journal->Checkpoint(++sequence_, newest_qid);
    failed_[i] = !status.ok();
    if (!status.ok()) return status;
  }
  return farm::Status::Ok();
}

farm::Status JournalPair::Discard() {
  (void)WaitForCheckpoint();
  for (auto& journal : journals_) MAILFARM_RETURN_IF_ERROR(journal->Discard());
  return farm::Status::Ok();
}

bool JournalPair::Damaged() {
  (void)WaitForCheckpoint();
  for (int i = 0; i < 2; ++i) {
    if (failed_[i] || journals_[i]->generation() == 0) return true;
  }
  return rewrite_needed_;
}

}  // namespace mailfarm::scheduler
