// spool_store.cc: the file-tree SpoolStore and its group commit. One I/O
// thread at a time (the committer) takes every write queued (up to max_batch)
// and makes them durable together: write all files into tmp/ (or into a
// spare file, or append), rename the new files into queue/, and for a batch
// of new files one append and fdatasync of the spool journal, run by a side
// thread meanwhile; for anything else one syncfs() of the spool's file system
// (followed by a journal checkpoint); with neither, fdatasync per file plus
// fsync per directory. While it commits, new injections queue up and form the
// next batch; other threads do reads and background work.
#include "scheduler/spool_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include "scheduler/crc32c.h"

namespace mailfarm::scheduler {

struct FileSpoolStore::Op {
  enum class Kind {
    kCreate,
    kAppend,
    kRemove,
    kRead,
    kQuarantine,
    kWork,
    kSpill
  };
  Kind kind;
  std::string qid;
  std::string path;      // the queue file (or the file to read / quarantine)
  std::string tmp_path;  // kCreate
  spool::Envelope envelope;
  std::string body;                  // kCreate; kSpill: the bytes to append
  std::shared_ptr<BodySpill> spill;  // kCreate of a spilled body; kSpill
  std::string record;                // kAppend
  std::string header;  // kCreate: the queue file's header, kept for the journal
  uint64_t truncate_to = 0;
  std::function<void()> work;

  farm::UniqueFd fd;
  bool created = false;  // the temp (or spare) file exists; goes on failure
  bool reused = false;   // tmp_path is a spare file being rewritten
  bool reuse_allowed = false;  // kRemove: the file may become a spare
  bool renamed = false;        // the queue file exists and must go on failure
  bool id_in_use = false;      // kCreate: another file has its name
  farm::Status status;
  uint64_t body_offset = 0;
  std::optional<farm::StatusOr<QueueFile>> read_result;

  CreateDone create_done;
  StatusDone status_done;
  ReadDone read_done;
  std::function<void()> work_done;
};

namespace {

// Operations that write the queue go through the single committer
// (Op::Kind's first three: kCreate, kAppend, kRemove).
bool IsCommit(int kind) { return kind <= 2; }

std::string Dirname(const std::string& path) {
  return path.substr(0, path.rfind('/'));
}
std::string Basename(const std::string& path) {
  return path.substr(path.rfind('/') + 1);
}

// Calls `visit` with the name of every entry of `dir_path` but . and ..
// (none when it cannot be read).
void ForEachName(const std::string& dir_path,
                 const std::function<void(const std::string&)>& visit) {
  DIR* dir = ::opendir(dir_path.c_str());
  if (dir == nullptr) return;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") visit(name);
  }
  ::closedir(dir);
}

// Unlinks every entry of `dir`; returns how many went.
int EmptyDirectory(const std::string& dir_path) {
  int removed = 0;
  ForEachName(dir_path, [&](const std::string& name) {
    if (::unlink((dir_path + "/" + name).c_str()) == 0) ++removed;
  });
  return removed;
}

// Removes everything in spool/tmp/: only a scheduler holding the lock writes
// there.
void CleanTemp(const std::string& tmp_dir) {
  if (int removed = EmptyDirectory(tmp_dir); removed > 0)
    LOG(INFO) << "removed " << removed << " unfinished temp file(s) in "
              << tmp_dir;
}

// What an earlier run left in spool/spare/ is removed, not reused: after a
// crash the unsynced renames that made those files spares may have survived
// only in part, so a spare's inode can also be a live job's file (e2fsck
// then counts two links); unlinking the spare name leaves that file alone.
void RemoveLeftoverSpares(const std::string& spare_dir) {
  EmptyDirectory(spare_dir);
}

// The greatest queue id among the files in queue/<hash>/ ("" when none).
// One readdir per directory at open: a file made durable by a syncfs may be
// newer than any id the journal recorded (its create not yet acknowledged,
// or made while the journal was turned off).
std::string NewestQueueFileId(const std::string& root) {
  std::string newest;
  for (const char* hex = "0123456789abcdef"; *hex != '\0'; ++hex) {
    ForEachName(root + "/queue/" + *hex, [&](const std::string& name) {
      if (IsValidQueueId(name) && name > newest) newest = name;
    });
  }
  return newest;
}

std::string QueueFilePath(const std::string& spool_dir, std::string_view qid) {
  return spool_dir + "/queue/" + QueueIdHashDir(qid) + "/" + std::string(qid);
}

// After a crash: every file the journal holds a create for is made exactly
// what the journal holds (rewritten unless it already is: missing, torn, a
// reused spare still holding an older job's bytes, or with the older job's
// state records after the new bytes); a job whose removal reached the
// journal is removed again (so it is not delivered twice). Rewriting loses
// nothing: a file whose state records were made durable was made durable by
// a syncfs, and every syncfs is followed by a checkpoint, which takes its
// create out of the journal.
// What the journals' records say of each job: the create in force for each
// qid (its last one; a cancel undoes the last create of its qid, a refused
// one whose name was another job's, leaving that job's own record, if any,
// in force) and the qids removed.
struct JournaledJobs {
  std::map<std::string_view, const SpoolJournal::Entry*> creates;
  std::set<std::string_view> removed;
};
JournaledJobs SortJournalEntries(
    const std::vector<SpoolJournal::Entry>& entries) {
  JournaledJobs jobs;
  std::map<std::string_view, std::vector<const SpoolJournal::Entry*>> made;
  for (const auto& e : entries) {
    if (e.kind == SpoolJournal::Kind::kCreate) made[e.qid].push_back(&e);
    if (e.kind == SpoolJournal::Kind::kRemove) jobs.removed.insert(e.qid);
    if (e.kind == SpoolJournal::Kind::kCancel && !made[e.qid].empty())
      made[e.qid].pop_back();
  }
  for (const auto& [qid, records] : made) {
    if (!records.empty()) jobs.creates[qid] = records.back();
  }
  return jobs;
}

farm::Status RecoverFromJournal(SpoolEnv* env, const std::string& root,
                                const std::vector<SpoolJournal::Entry>& entries,
                                GroupCommitStats* counts) {
  auto [creates, removed] = SortJournalEntries(entries);
  for (std::string_view qid : removed) {
    if (!IsValidQueueId(qid)) continue;
    if (env->Unlink(QueueFilePath(root, qid)).ok()) {
      ++counts->re_removed;
      LOG(INFO) << qid << ": removed again (its removal was in the spool "
                << "journal, the crash lost it)";
    }
  }
  for (const auto& [qid, entry] : creates) {
    if (removed.count(qid) > 0 || !IsValidQueueId(qid)) continue;
    std::string path = QueueFilePath(root, qid);
    farm::UniqueFd file_fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    std::string why = "the file was missing";
    if (file_fd) {
      // What the disk holds, not the page cache: after a failed write-back
      // the kernel keeps the lost bytes as clean cached pages, and an earlier
      // run that died after a failed syncfs leaves the file looking whole.
      (void)::posix_fadvise(file_fd.get(), 0, 0, POSIX_FADV_DONTNEED);
      auto found = ReadWholeFile(file_fd.get(), path);
      if (found.ok() && *found == entry->data) continue;
      if (auto file = ReadQueueFile(path); !file.ok()) {
        why = file.status().message();
      } else {
        why = "the file held " +
              std::to_string(found.ok() ? found->size() : 0) +
              " bytes, the journal " + std::to_string(entry->data.size());
      }
    }
    // A new inode under the name: the old one may have another name too.
    std::string tmp = root + "/tmp/" + std::string(qid) + ".restore";
    auto fd = env->CreateExclusive(tmp);
    if (!fd.ok()) return fd.status();
    farm::Status written = env->Write(fd->get(), entry->data, tmp);
    if (written.ok()) written = env->Rename(tmp, path);
    if (!written.ok()) {
      (void)env->Unlink(tmp);
      return written;
    }
    ++counts->restored;
    LOG(WARNING) << qid << ": restored from the spool journal (" << why << ")";
  }
  if (!entries.empty())
    LOG(INFO) << "spool journal: " << creates.size() << " create(s) and "
              << removed.size() << " removal(s) since the last checkpoint; "
              << counts->restored << " file(s) restored, " << counts->re_removed
              << " removed again";
  return farm::Status::Ok();
}

farm::StatusOr<farm::UniqueFd> TakeLock(const std::string& spool_dir) {
  std::string path = spool_dir + "/lock";
  farm::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) return farm::Status::FromErrno("open " + path, errno);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK)
      return farm::Status::FromErrno("flock " + path, errno);
    char buf[32] = {};
    [[maybe_unused]] ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string holder(buf);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' '))
      holder.pop_back();
    return farm::Status::Error(
        "the spool " + spool_dir +
        " is locked by another mailfarm-scheduler (pid " +
        (holder.empty() ? "unknown" : holder) +
        "); two schedulers never share a spool");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 ||
      ::pwrite(fd.get(), pid.data(), pid.size(), 0) < 0) {
    return farm::Status::FromErrno("write " + path, errno);
  }
  return fd;
}

}  // namespace

farm::StatusOr<std::unique_ptr<FileSpoolStore>> FileSpoolStore::Open(
    const Options& options, LoopTasks* tasks) {
  SpoolEnv* env = options.env != nullptr ? options.env : PosixSpoolEnv();
  const std::string& root = options.spool_dir;
  MAILFARM_RETURN_IF_ERROR(env->MakeDirectory(root, 0750));
  auto lock = TakeLock(root);
  if (!lock.ok()) return lock.status();
  for (const char* sub : {"/queue", "/tmp", "/corrupt", "/spare"}) {
    MAILFARM_RETURN_IF_ERROR(env->MakeDirectory(root + sub, 0700));
  }
  for (const char* hex = "0123456789abcdef"; *hex != '\0'; ++hex) {
    MAILFARM_RETURN_IF_ERROR(env->MakeDirectory(root + "/queue/" + *hex, 0700));
  }
  CleanTemp(root + "/tmp");
  // The hash directories stay open: a batch made durable by fdatasync
  // fsyncs its directories without an open and a close each time.
  std::map<std::string, farm::UniqueFd> dirs;
  for (const char* hex = "0123456789abcdef"; *hex != '\0'; ++hex) {
    std::string dir = root + "/queue/" + *hex;
    auto fd = env->OpenDirectory(dir);
    if (!fd.ok()) return fd.status();
    dirs.emplace(dir, std::move(*fd));
  }
  RemoveLeftoverSpares(root + "/spare");
  // A journal is read whenever one exists, even when it is now turned off:
  // messages acknowledged through it may exist nowhere else.
  std::unique_ptr<JournalPair> journals;
  GroupCommitStats recovered;
  std::string newest_qid;
  bool journal_exists = false;
  for (const std::string& path : JournalPair::Paths(root))
    journal_exists |= ::access(path.c_str(), F_OK) == 0;
  if (options.journal_bytes > 0 || journal_exists) {
    std::vector<SpoolJournal::Entry> entries;
    // Each file takes half: one is checkpointed while the other fills.
    auto opened = JournalPair::Open(env, root, options.journal_bytes / 2,
                                    &entries, &newest_qid);
    if (!opened.ok()) return opened.status();
    journals = std::move(*opened);
    MAILFARM_RETURN_IF_ERROR(
        RecoverFromJournal(env, root, entries, &recovered));
    // What was restored, and every file written before the crash, durable;
    // then the journal starts over (or goes, when turned off).
    MAILFARM_RETURN_IF_ERROR(env->SyncFilesystem(lock->get(), root));
    if (options.journal_bytes > 0) {
      MAILFARM_RETURN_IF_ERROR(journals->CheckpointAfterSync(newest_qid));
    } else {
      MAILFARM_RETURN_IF_ERROR(journals->Discard());
      journals.reset();
      for (const std::string& path : JournalPair::Paths(root)) {
        auto removed = env->Unlink(path);
        if (!removed.ok() && ::access(path.c_str(), F_OK) == 0) return removed;
      }
    }
  }
  std::unique_ptr<FileSpoolStore> store(
      new FileSpoolStore(options, tasks, std::move(*lock), std::move(dirs),
                         std::move(journals), recovered));
  // Ids go on from the newest one in use, whatever the clock says now: a
  // clock set back across a restart gives no id of a job in the spool.
  store->ids_.Seed(std::max(newest_qid, NewestQueueFileId(root)));
  return store;
}

FileSpoolStore::FileSpoolStore(Options options, LoopTasks* tasks,
                               farm::UniqueFd lock_fd,
                               std::map<std::string, farm::UniqueFd> queue_dirs,
                               std::unique_ptr<JournalPair> journals,
                               GroupCommitStats recovered)
    : options_(std::move(options)),
      env_(options_.env != nullptr ? options_.env : PosixSpoolEnv()),
      clock_(options_.clock != nullptr ? options_.clock : farm::RealClock()),
      tasks_(tasks),
      lock_fd_(std::move(lock_fd)),
      queue_dirs_(std::move(queue_dirs)),
      journals_(std::move(journals)),
      stats_(recovered),
      alive_(std::make_shared<bool>(true)) {
  if (options_.max_batch < 1) options_.max_batch = 1;
  if (journals_ != nullptr) journal_commit_ = std::make_unique<SideThread>();
  int threads = std::max(1, options_.io_threads);
  for (int i = 0; i < threads; ++i)
    threads_.emplace_back([this] { WorkerLoop(); });
}

FileSpoolStore::~FileSpoolStore() { Shutdown(); }

void FileSpoolStore::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  bool committed = !threads_.empty();
  for (auto& t : threads_) t.join();
  threads_.clear();
  // After a failed journal write or sync, which left records of refused
  // creates that the next open would restore, a checkpoint (if the disk
  // takes it now) makes sure they are never read.
  if (committed && journals_ != nullptr && journals_->Damaged()) {
    GroupCommitStats ignored;
    // Nothing waits on this sync: a failed syncfs reporting an error
    // already reported elsewhere is called once more.
    farm::Status status = SyncAll(&ignored, /*retry_reported=*/true);
    if (!status.ok())
      LOG(WARNING) << "spool journal: checkpoint at stop: " << status.message();
  }
}

std::string FileSpoolStore::PathOf(const std::string& qid) const {
  return QueueFilePath(options_.spool_dir, qid);
}

void FileSpoolStore::Submit(std::unique_ptr<Op> op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!IsCommit(static_cast<int>(op->kind))) ++background_queued_;
    queue_.push_back(std::move(op));
  }
  cv_.notify_one();
}

void FileSpoolStore::Create(spool::Envelope envelope, std::string body,
                            CreateDone done) {
  SubmitCreate(std::move(envelope), std::move(body), nullptr, std::move(done));
}

void FileSpoolStore::CreateFromSpill(spool::Envelope envelope,
                                     std::shared_ptr<BodySpill> spill,
                                     CreateDone done) {
  SubmitCreate(std::move(envelope), std::string(), std::move(spill),
               std::move(done));
}

void FileSpoolStore::SubmitCreate(spool::Envelope envelope, std::string body,
                                  std::shared_ptr<BodySpill> spill,
                                  CreateDone done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kCreate;
  op->qid = ids_.Next(clock_->NowUnixMs());
  envelope.set_qid(op->qid);
  op->path = PathOf(op->qid);
  op->tmp_path = options_.spool_dir + "/tmp/" + op->qid + ".tmp";
  op->envelope = std::move(envelope);
  op->body = std::move(body);
  op->spill = std::move(spill);
  op->create_done = std::move(done);
  unacknowledged_[op->qid];  // until FinishCreate
  Submit(std::move(op));
}

void FileSpoolStore::AppendSpill(std::shared_ptr<BodySpill> spill,
                                 std::string data, StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kSpill;
  op->spill = std::move(spill);
  op->body = std::move(data);
  op->status_done = std::move(done);
  Submit(std::move(op));
}

void FileSpoolStore::DropSpill(std::shared_ptr<BodySpill> spill) {
  // The last reference goes on the I/O thread, with the file's blocks.
  RunBackground([spill = std::move(spill)]() mutable { spill.reset(); }, [] {});
}

void FileSpoolStore::AppendState(const std::string& qid,
                                 const spool::JobState& state,
                                 uint64_t truncate_to, StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kAppend;
  op->qid = qid;
  op->path = PathOf(qid);
  op->record = EncodeStateRecord(state);
  op->truncate_to = truncate_to;
  op->status_done = std::move(done);
  Submit(std::move(op));
}

void FileSpoolStore::Remove(const std::string& qid, Reuse reuse,
                            StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kRemove;
  op->reuse_allowed = reuse == Reuse::kAllowed;
  op->qid = qid;
  op->path = PathOf(qid);
  op->status_done = std::move(done);
  Submit(std::move(op));
}

void FileSpoolStore::Read(const std::string& path, ReadDone done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kRead;
  op->path = path;
  op->read_done = std::move(done);
  // A file still being created is in queue/ before it is durable (see
  // RunBatch): an adopt must not take it for a job of its own. Its read runs
  // once the create has completed, when the queue already knows the job.
  if (auto it = unacknowledged_.find(Basename(path));
      it != unacknowledged_.end()) {
    it->second.push_back(std::move(op));
    return;
  }
  Submit(std::move(op));
}

void FileSpoolStore::Quarantine(const std::string& path, StatusDone done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kQuarantine;
  op->path = path;
  op->status_done = std::move(done);
  Submit(std::move(op));
}

void FileSpoolStore::RunBackground(std::function<void()> work,
                                   std::function<void()> done) {
  auto op = std::make_unique<Op>();
  op->kind = Op::Kind::kWork;
  op->work = std::move(work);
  op->work_done = std::move(done);
  Submit(std::move(op));
}

GroupCommitStats FileSpoolStore::stats() {
  GroupCommitStats stats;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats = stats_;
  }
  if (journals_ != nullptr) {  // counted by the side thread that ran them
    stats.side_checkpoints = journals_->side_checkpoints();
    stats.checkpoint_waits = journals_->checkpoint_waits();
    stats.checkpoints += stats.side_checkpoints;
    stats.fs_syncs += stats.side_checkpoints;
  }
  return stats;
}

size_t FileSpoolStore::pending() {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size() + running_;
}

// One thread at a time commits (creates, appends, removes): everything that
// arrives while it syncs waits for it and forms the next, larger batch, and
// one job's appends and removal stay in order. The other threads meanwhile
// take background work (reads, DSN building, quarantine).
void FileSpoolStore::WorkerLoop() {
  for (;;) {
    std::vector<std::unique_ptr<Op>> batch;
    bool commits = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] {
        return (!committing_ && !queue_.empty()) || background_queued_ > 0 ||
               (stopping_ && queue_.empty());
      });
      if (queue_.empty()) {  // stopping, and everything queued is done
        cv_.notify_all();    // so that every other thread leaves too
        return;
      }
      if (!committing_) {
        while (!queue_.empty() && batch.size() < options_.max_batch) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      } else {
        for (auto it = queue_.begin();
             it != queue_.end() && batch.size() < options_.max_batch;) {
          if (IsCommit(static_cast<int>((*it)->kind))) {
            ++it;
            continue;
          }
          batch.push_back(std::move(*it));
          it = queue_.erase(it);
        }
      }
      for (auto& op : batch) {
        if (IsCommit(static_cast<int>(op->kind))) {
          commits = true;
        } else {
          --background_queued_;
        }
      }
      if (commits) committing_ = true;
      running_ += batch.size();
    }
    size_t n = batch.size();
    RunBatch(batch, commits);  // posts the completions, empties `batch`
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      running_ -= n;
      if (commits) committing_ = false;
      stopping = stopping_;
    }
    // No wake-up is needed otherwise: this thread checks the queue again
    // itself, and Submit wakes a waiting thread for new work. When stopping,
    // waiting threads must see that the queue has drained, or they never
    // leave.
    if (stopping) cv_.notify_all();
  }
}

// A new file's header, encoded before anything is written: the journal
// commit reads it (and the body) on the side thread while the file is
// written.
void FileSpoolStore::PrepareCreate(Op& op) {
  if (op.spill != nullptr) {
    op.envelope.set_body_size(op.spill->size);
    op.envelope.set_body_crc32c(op.spill->crc32c);
  } else {
    op.envelope.set_body_size(op.body.size());
    op.envelope.set_body_crc32c(Crc32c(op.body));
  }
  op.header = EncodeQueueHeader(op.envelope);
  op.body_offset = op.header.size();
}

// Opens and writes a new or appended file; leaves op.fd open for the sync.
void FileSpoolStore::WriteOne(Op& op) {
  if (op.kind == Op::Kind::kCreate) {
    const std::string& header = op.header;
    // A spare file is rewritten whole, its stale tail cut off; the name check
    // of every reader (the file's name must equal envelope.qid) keeps its old
    // contents from ever passing for this job (see the durability rule).
    while (!spares_.empty() && !op.fd) {
      std::string spare = std::move(spares_.back());
      spares_.pop_back();
      if (auto fd = env_->OpenRewrite(spare); fd.ok()) {
        op.fd = std::move(*fd);
        op.tmp_path = std::move(spare);
        op.reused = true;
      }
    }
    if (!op.fd) {
      auto fd = env_->CreateExclusive(op.tmp_path);
      if (!fd.ok()) {
        op.status = fd.status();
        return;
      }
      op.fd = std::move(*fd);
    }
    op.created = true;
    op.status = env_->Write2(op.fd.get(), header, op.body, op.tmp_path);
    if (op.status.ok() && op.spill != nullptr)
      op.status = env_->Copy(op.spill->fd.get(), op.spill->size, op.fd.get(),
                             op.tmp_path);
    if (op.status.ok() && op.reused)
      op.status = env_->Truncate(
          op.fd.get(), header.size() + op.envelope.body_size(), op.tmp_path);
    return;  // header and body stay for the journal until the sync
  }
  auto fd = env_->OpenAppend(op.path);
  if (!fd.ok()) {
    op.status = fd.status();
    return;
  }
  op.fd = std::move(*fd);
  if (op.truncate_to > 0)
    op.status = env_->Truncate(op.fd.get(), op.truncate_to, op.path);
  if (op.status.ok()) op.status = env_->Write(op.fd.get(), op.record, op.path);
}

// Appends a body's next bytes to its spill file (an I/O thread; one append
// of a spill at a time, so the file offset and the checksum stay in order).
void FileSpoolStore::WriteSpill(Op& op) {
  BodySpill& spill = *op.spill;
  const std::string tmp_dir = options_.spool_dir + "/tmp";
  if (!spill.fd) {
    auto fd = env_->CreateAnonymous(tmp_dir);
    if (!fd.ok()) {
      op.status = fd.status();
      return;
    }
    spill.fd = std::move(*fd);
  }
  op.status =
      env_->Write(spill.fd.get(), op.body, tmp_dir + " (a message body)");
  if (!op.status.ok()) return;
  spill.size += op.body.size();
  spill.crc32c = Crc32cExtend(spill.crc32c, op.body.data(), op.body.size());
}

// The commit order (see the durability rule in spool_store.h):
//   1. write every new file into tmp/ or a spare, and every appended record;
//   2. rename the new files into queue/<hash>/ and move or unlink the removed
//      ones, before any sync, so that the sync carries the renames too;
//   3. make the batch durable: a batch of new files (each up to
//      SpoolJournal::kMaxFileBytes) by one append and fdatasync of the
//      journal, started on the side thread before step 1 so that the disk
//      syncs while this thread writes the files (recovery rebuilds from the
//      journal any file a crash lost, so the file need not be on disk
//      first); anything else by one syncfs (every dirty inode of the file
//      system, directories included) followed by a journal checkpoint;
//      without a journal and below options_.syncfs_min_batch, fdatasync of
//      each file plus an fsync of each directory that gained an entry;
//   4. only then complete: a create is acknowledged after steps 1-3
//      succeeded.
// Removals are not synced: a removal lost in a power cut brings the file
// back and the job is delivered again (at-least-once), as in Postfix; the
// journal's record of it, written after the batch's commit and made durable
// with the next one, prevents that.
void FileSpoolStore::RunBatch(std::vector<std::unique_ptr<Op>>& batch,
                              bool commits) {
  GroupCommitStats delta;
  for (auto& op : batch) {
    if (op->kind == Op::Kind::kCreate) PrepareCreate(*op);
  }
  // The journal and the spares belong to the committer: a batch of reads and
  // background work, run by another thread meanwhile, never touches them.
  bool journaling =
      commits && journals_ != nullptr && StartJournalCommit(batch);
  for (auto& op : batch) {
    if ((op->kind == Op::Kind::kCreate || op->kind == Op::Kind::kAppend) &&
        op->status.ok())
      WriteOne(*op);
  }
  RenameAndUnlink(batch);
  size_t writes = 0;
  for (auto& op : batch) writes += op->fd && op->status.ok();
  bool refused = false;
  if (journaling) {
    refused = FinishJournalCommit(batch, &delta);
  } else if (writes > 0) {
    SyncBatch(batch, writes, &delta);
  }
  for (auto& op : batch) {
    if (op->kind != Op::Kind::kCreate) continue;
    if (op->created) (void)env_->Unlink(op->tmp_path);  // nothing half-accepted
    // Never acknowledged: not a job. Unlinked before the removal records
    // are written, which may take a syncfs that must not keep the file.
    if (op->renamed && !op->status.ok()) (void)env_->Unlink(op->path);
  }
  if (commits && journals_ != nullptr &&
      !(removed_.empty() && cancelled_.empty()))
    WriteRemovals(&delta, /*sync=*/refused);
  for (auto& op : batch) {  // the bytes are in the page cache now
    if (op->kind != Op::Kind::kCreate) continue;
    std::string().swap(op->body);
    std::string().swap(op->header);
    op->spill.reset();  // its file goes on this thread
  }
  bool no_space = false;
  for (auto& op : batch) {
    switch (op->kind) {
      case Op::Kind::kCreate:
        if (op->status.ok()) {
          ++delta.files;
          delta.reused += op->reused;
        } else if (op->status.code() == farm::Status::Code::kNoSpace) {
          no_space = true;
        }
        break;
      case Op::Kind::kRead:
        op->read_result =
            ReadQueueFile(op->path, ReadOptions{.verify_body = false});
        break;
      case Op::Kind::kQuarantine:
        op->status = env_->Rename(
            op->path, options_.spool_dir + "/corrupt/" + Basename(op->path));
        break;
      case Op::Kind::kWork:
        op->work();
        break;
      case Op::Kind::kSpill:
        WriteSpill(*op);
        std::string().swap(op->body);
        // Let go here: when the caller has dropped the spill meanwhile, its
        // file goes on this thread, not the loop's.
        op->spill.reset();
        break;
      default:
        break;
    }
    if (!op->status.ok()) {
      ++delta.failures;
      LOG(WARNING) << "spool: " << op->status.message();
    }
  }
  if (no_space) DropSpares();  // give their blocks back to the full disk
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (delta.files > 0) ++stats_.batches;
    stats_.files += delta.files;
    stats_.reused += delta.reused;
    stats_.journal_syncs += delta.journal_syncs;
    stats_.checkpoints += delta.checkpoints;
    stats_.data_syncs += delta.data_syncs;
    stats_.fs_syncs += delta.fs_syncs;
    stats_.dir_syncs += delta.dir_syncs;
    stats_.failures += delta.failures;
    stats_.max_batch = std::max<uint64_t>(stats_.max_batch, delta.files);
  }
  auto done =
      std::make_shared<std::vector<std::unique_ptr<Op>>>(std::move(batch));
  batch.clear();
  std::weak_ptr<bool> alive = alive_;
  tasks_->Post([this, alive, done] {
    for (auto& op : *done) {
      if (op->kind == Op::Kind::kCreate && !alive.expired()) {
        FinishCreate(*op);
      } else {
        Finish(*op);
      }
    }
  });
}

// Step 2 of the commit: new files enter queue/ (not yet durable, not yet
// acknowledged), removed files leave it.
void FileSpoolStore::RenameAndUnlink(std::vector<std::unique_ptr<Op>>& batch) {
  for (auto& op : batch) {
    if (op->kind == Op::Kind::kCreate && op->status.ok()) {
      auto renamed = env_->RenameNoReplace(op->tmp_path, op->path);
      if (!renamed.ok()) {
        op->status = renamed.status();
      } else if (!*renamed) {
        op->status =
            farm::Status::TempFail("queue id " + op->qid + " already in use");
        op->id_in_use = true;
      } else {
        op->renamed = true;
        op->created = false;
      }
    } else if (op->kind == Op::Kind::kRemove) {
      RemoveOne(*op);
    }
  }
}

// A removed file becomes a spare when its remover allows it (see
// SpoolStore::Reuse), while there is room for it and when it is small (a
// spare holds its blocks); otherwise it is unlinked.
void FileSpoolStore::RemoveOne(Op& op) {
  bool spare = false;
  std::string spare_path = options_.spool_dir + "/spare/" + op.qid;
  if (op.reuse_allowed && spares_.size() < options_.spare_files) {
    auto size = env_->FileSize(op.path);
    spare = size.ok() && *size <= options_.spare_max_bytes;
  }
  op.status = spare ? env_->Rename(op.path, spare_path) : env_->Unlink(op.path);
  if (!op.status.ok()) return;
  if (spare) spares_.push_back(std::move(spare_path));
  // Journaled once the batch's commit is over (the side thread may be
  // writing the journal now).
  if (journals_ != nullptr) removed_.push_back(op.qid);
}

void FileSpoolStore::DropSpares() {
  if (spares_.empty()) return;
  LOG(WARNING) << "spool: the disk is full; removing " << spares_.size()
               << " spare file(s) in " << options_.spool_dir << "/spare";
  for (const auto& spare : spares_) (void)env_->Unlink(spare);
  spares_.clear();
}

// Step 3 of the commit: makes every write of the batch (files, their data and
// their directory entries) durable, or fails the writes that could not be.
void FileSpoolStore::SyncBatch(std::vector<std::unique_ptr<Op>>& batch,
                               size_t writes, GroupCommitStats* stats) {
  auto syncing = [](const Op& op) { return op.fd && op.status.ok(); };
  // With a journal every batch it did not take is one syncfs (SyncAll
  // checkpoints after it, which recovery relies on).
  if (journals_ != nullptr ||
      (options_.syncfs_min_batch > 0 && writes >= options_.syncfs_min_batch)) {
    farm::Status synced = SyncAll(stats);
    for (auto& op : batch) {
      if (syncing(*op)) op->status = synced;
      op->fd.Reset();
    }
    return;
  }
  // Several files fdatasynced one by one (syncfs disabled): start every
  // write-back first so that they share the device's queue. A single file
  // gains nothing from it.
  if (writes > 1) {
    for (auto& op : batch) {
      if (syncing(*op)) env_->StartWriteback(op->fd.get());
    }
  }
  std::set<std::string> dirs;
  for (auto& op : batch) {
    if (!op->fd) continue;
    if (op->status.ok()) {
      op->status = env_->DataSync(op->fd.get(), op->path);
      ++stats->data_syncs;
      if (op->status.ok() && op->renamed) dirs.insert(Dirname(op->path));
    }
    op->fd.Reset();
  }
  // POSIX makes a new directory entry durable only with an fsync of the
  // directory. On ext4 the fdatasync above already committed the rename, so
  // this costs no journal commit, but still one device cache flush.
  for (const std::string& dir : dirs) {
    farm::Status synced;
    auto kept = queue_dirs_.find(dir);
    if (kept != queue_dirs_.end()) {
      synced = env_->Sync(kept->second.get(), dir);
      ++stats->dir_syncs;
    } else if (auto fd = env_->OpenDirectory(dir); !fd.ok()) {
      synced = fd.status();
    } else {
      synced = env_->Sync(fd->get(), dir);
      ++stats->dir_syncs;
    }
    if (synced.ok()) continue;
    for (auto& op : batch) {
      if (op->renamed && op->status.ok() && Dirname(op->path) == dir)
        op->status = synced;
    }
  }
}

// A create's completion on the loop thread: the job is acknowledged (or not),
// then reads of its file that waited for this run (see Read).
void FileSpoolStore::FinishCreate(Op& op) {
  std::vector<std::unique_ptr<Op>> waiting;
  if (auto it = unacknowledged_.find(op.qid); it != unacknowledged_.end()) {
    waiting = std::move(it->second);
    unacknowledged_.erase(it);
  }
  Finish(op);
  for (auto& read : waiting) Submit(std::move(read));
}

void FileSpoolStore::Finish(Op& op) {
  switch (op.kind) {
    case Op::Kind::kCreate:
      if (op.status.ok()) {
        op.create_done(Created{op.qid, op.path, op.body_offset});
      } else {
        op.create_done(op.status);
      }
      break;
    case Op::Kind::kRead:
      op.read_done(std::move(*op.read_result));
      break;
    case Op::Kind::kWork:
      op.work_done();
      break;
    default:
      op.status_done(op.status);
      break;
  }
}

// Starts the journal commit of a batch whose writes are all new files small
// enough for the journal, if they fit before its end; false leaves the batch
// to SyncBatch (a syncfs, which for a full journal is the checkpoint).
// (Queue ids do not repeat: Open seeds the generator past every id in use.
// Should a file with the id appear anyway, the no-replace rename refuses the
// create and a cancel record, not a removal, undoes its journal record.)
bool FileSpoolStore::StartJournalCommit(
    std::vector<std::unique_ptr<Op>>& batch) {
  size_t bytes = 0, count = 0;
  for (const auto& op : batch) {
    if (op->kind == Op::Kind::kAppend) return false;
    if (op->kind != Op::Kind::kCreate) continue;
    // A spilled body is not in memory for the journal to copy (and is
    // larger than a journaled file anyway).
    if (op->spill != nullptr) return false;
    size_t size = op->header.size() + op->body.size();
    if (size > SpoolJournal::kMaxFileBytes) return false;
    bytes += size;
    ++count;
  }
  if (count == 0 || !RoomInJournal(bytes, count)) return false;
  // The side thread reads only qid, header and body, which nothing changes
  // until FinishJournalCommit has waited for it.
  SpoolJournal* journal = journals_->current();
  journal_commit_->Start([journal, &batch] {
    for (const auto& op : batch) {
      if (op->kind == Op::Kind::kCreate)
        journal->AddCreate(op->qid, op->header, op->body);
    }
    return journal->Commit();
  });
  return true;
}

// Waits for the journal commit: the batch is durable if it succeeded, else
// one syncfs (and checkpoint) must make it so. A create whose file could not
// be written, or that neither sync made durable, was journaled anyway; its
// removal record keeps recovery from bringing back a message that was never
// accepted. True when such a record must be made durable before the
// refusal is reported (RunBatch commits it). After a failed journal write
// the removal waits for the checkpoint, which voids the create's record
// itself (see Shutdown).
bool FileSpoolStore::FinishJournalCommit(
    std::vector<std::unique_ptr<Op>>& batch, GroupCommitStats* stats) {
  farm::Status journaled = journal_commit_->Wait();
  ++stats->journal_syncs;
  // Known before any sync: RewriteJournaledFiles must leave those names'
  // files alone.
  for (auto& op : batch) {
    if (op->id_in_use) cancelled_.push_back(op->qid);
  }
  if (!journaled.ok()) {
    LOG(WARNING) << "spool: " << journaled.message()
                 << "; making the batch durable with syncfs instead";
    farm::Status synced = SyncAll(stats);
    for (auto& op : batch) {
      if (op->fd && op->status.ok()) op->status = synced;
    }
  }
  bool refused = false;
  for (auto& op : batch) {
    if (op->kind == Op::Kind::kCreate && !op->status.ok()) {
      if (!op->id_in_use) removed_.push_back(op->qid);
      refused = true;
    }
    op->fd.Reset();
  }
  return refused;
}

// One syncfs: every queue file, state record and directory entry durable.
// With a journal, the removals it has pending are written just before (the
// syncfs makes them durable too, so even a torn checkpoint cannot bring
// those jobs back), and a checkpoint follows: after any syncfs the journal
// covers only files no syncfs has seen, so recovery may rewrite them whole.
// A failed checkpoint fails the sync.
farm::Status FileSpoolStore::SyncAll(GroupCommitStats* stats,
                                     bool retry_reported) {
  // (A journal whose last write failed has no generation: nothing of it is
  // read again once the checkpoint below succeeds.)
  SpoolJournal* journal = journals_ != nullptr ? journals_->current() : nullptr;
  if (journal != nullptr && journal->HasPending() && journal->generation() != 0)
    (void)journal->Write();
  auto sync_filesystem = [&] {
    ++stats->fs_syncs;
    return env_->SyncFilesystem(lock_fd_.get(), options_.spool_dir);
  };
  farm::Status synced = sync_filesystem();
  if (journals_ == nullptr) return synced;
  if (!synced.ok()) {
    journals_->NoteFailedSync();
    if (!retry_reported) return synced;
    // syncfs reports a write-back error once per open file, one that the
    // journal's fdatasync has reported already too; a second call reports
    // only the errors since the first. What the journals cover is written
    // again below, and the caller's own writes do not depend on this sync.
    synced = sync_filesystem();
    if (!synced.ok()) return synced;
  }
  bool rewritten = false;
  if (journals_->RewriteNeeded()) {
    MAILFARM_RETURN_IF_ERROR(RewriteJournaledFiles());
    synced = sync_filesystem();
    if (!synced.ok()) return synced;  // and the rewrite is still needed
    rewritten = true;
  }
  ++stats->checkpoints;
  return journals_->CheckpointAfterSync(ids_.Last(), rewritten);
}

// After a failed syncfs (see JournalPair::NoteFailedSync): every queue file
// the journals hold the create of, and still in queue/, gets its bytes
// written again from the journal, in place, so that the next syncfs writes
// them back and a checkpoint may then drop their records. The bytes are the
// ones it was created with, so a farm child reading the file meanwhile reads
// the same; state records appended after them stay.
farm::Status FileSpoolStore::RewriteJournaledFiles() {
  auto entries = journals_->ReadEntries();
  if (!entries.ok()) return entries.status();
  // Refusals not yet recorded (WriteRemovals writes them after the sync):
  // a cancelled create's name is another job's file.
  for (const std::string& qid : cancelled_)
    entries->push_back({SpoolJournal::Kind::kCancel, qid, {}});
  auto [creates, removed] = SortJournalEntries(*entries);
  size_t rewritten = 0;
  for (const auto& [qid, entry] : creates) {
    if (removed.count(qid) > 0 || !IsValidQueueId(qid)) continue;
    std::string path = PathOf(std::string(qid));
    auto fd = env_->OpenRewrite(path);
    if (!fd.ok()) {
      if (fd.status().code() == farm::Status::Code::kNotFound)
        continue;  // removed since (its removal record not yet written)
      return fd.status();
    }
    MAILFARM_RETURN_IF_ERROR(env_->WriteAt(fd->get(), entry->data, 0, path));
    ++rewritten;
  }
  LOG(WARNING) << "spool: a syncfs failed since the journal's records were "
               << "written; wrote " << rewritten
               << " queue file(s) again from the journal before its "
               << "checkpoint";
  return farm::Status::Ok();
}

// Whether the current journal has room for the pending records and creates
// of `file_bytes` in all (`count` files), switching to the other journal when
// it has not (its checkpoint then runs beside the commits; a commit waits for
// it only when the other journal is still being checkpointed). False sends
// the batch to SyncAll, as for a create too large for either journal.
bool FileSpoolStore::RoomInJournal(size_t file_bytes, size_t count) {
  if (journals_->current()->Fits(file_bytes, count)) return true;
  if (!journals_->current()->FitsEmpty(file_bytes, count)) return false;
  if (!journals_->Switch(ids_.Last())) return false;
  return journals_->current()->Fits(file_bytes, count);
}

// Removals recorded in the journal without a sync of their own, as an unlink
// is not synced: a later commit or the kernel's write-back carries them.
// `sync`: the records undo creates being refused, which must not come back.
void FileSpoolStore::WriteRemovals(GroupCommitStats* stats, bool sync) {
  // A cancel is always synced, kept ones from an earlier batch too: lost, it
  // would let recovery write a refused create over another job's file.
  sync = sync || !cancelled_.empty();
  // The room first: a switch makes the other journal the one to write to.
  farm::Status status;
  if (!RoomInJournal(0, removed_.size() + cancelled_.size())) {
    // Makes the removals durable without records, and voids the creates.
    status = SyncAll(stats, /*retry_reported=*/true);
  } else {
    SpoolJournal* journal = journals_->current();
    for (const std::string& qid : removed_) journal->AddRemove(qid);
    for (const std::string& qid : cancelled_) journal->AddCancel(qid);
    status = sync ? journal->Commit() : journal->Write();
    if (!status.ok() && sync) {
      // The refused creates' records would come back after a crash: a
      // syncfs and a checkpoint void them instead (their files are gone).
      LOG(WARNING) << "spool journal: " << status.message()
                   << "; voiding the refused creates with a checkpoint";
      status = SyncAll(stats, /*retry_reported=*/true);
    }
  }
  removed_.clear();
  // A cancel neither recorded nor voided by a checkpoint is kept for the
  // next commit: RewriteJournaledFiles must go on leaving that name's file
  // (another job's) alone. (A cancel recorded twice does no harm: no
  // create of the other job is in the journal.)
  if (status.ok()) {
    cancelled_.clear();
    return;
  }
  const char* risk = "";
  if (!cancelled_.empty()) {
    risk =
        "; a crash before the next checkpoint may let recovery write a "
        "refused message over the file of the job that has its queue id";
  } else if (sync) {
    risk =
        "; a crash before the next checkpoint may bring back a refused "
        "message (delivered although its client was told to try again)";
  }
  LOG(WARNING) << "spool journal: " << status.message() << risk;
}

}  // namespace mailfarm::scheduler
