// spool_store_test.cc: the file-tree store: durable create, group commit
// batching, the commit order (rename before sync, removals not synced), full
// disk and failed fsync leave nothing behind, the spool lock, spare files.
#include "scheduler/spool_store.h"

#include <dirent.h>
#include <event2/event.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "farm/clock.h"

namespace mailfarm::scheduler {
namespace {

// Wraps the real env; fails writes or syncs on demand and can hold the first
// write until released (to pile up a batch behind it).
class FaultEnv : public SpoolEnv {
 public:
  std::atomic<bool> no_space{false};
  std::atomic<bool> fail_sync{false};
  std::atomic<bool> hold_first_write{false};
  std::atomic<bool> released{false};
  // Holds every syncfs until released (up to 10 s), failing it when
  // fail_held_syncfs is set by then.
  std::atomic<bool> hold_syncfs{false};
  std::atomic<bool> syncfs_released{false};
  std::atomic<bool> fail_held_syncfs{false};
  std::atomic<int> held_syncfs_done{0};
  // Journal writes (WriteAt) to this path fail; set while the store is idle.
  std::string fail_journal_writes_to;
  // The journal writes (WriteAt) numbered from fail_journal_writes_from
  // through ..._through fail, counting from 1 in journal_write_calls (0:
  // none).
  std::atomic<int> fail_journal_writes_from{0};
  std::atomic<int> fail_journal_writes_through{0};
  std::atomic<int> journal_write_calls{0};
  // The next this many syncfs calls fail.
  std::atomic<int> syncfs_failures_left{0};
  // The fdatasync with this number fails, counting from 1 in data_syncs
  // (0: none); like a real write-back error, the next syncfs reports it too
  // (Linux records it for the file system as well as for the file).
  std::atomic<int> fail_data_sync_number{0};
  // Set by the test: a syncfs that succeeds counts in
  // synced_with_a_queue_file when a regular file is under this directory.
  std::string watch_queue_dir;
  std::atomic<int> synced_with_a_queue_file{0};
  // Journal writes reaching past this offset fail with ENOSPC (0: none do).
  std::atomic<uint64_t> no_space_past{0};
  // Queue files only (the journal's WriteAt is not affected): fail with
  // ENOSPC; or hold each write (up to 5 s) until an fdatasync has begun,
  // counting the writes it let through.
  std::atomic<bool> no_space_for_files{false};
  std::atomic<bool> hold_writes_for_a_sync{false};
  std::atomic<int> writes_after_a_sync{0};
  std::atomic<int> data_syncs{0};
  std::atomic<int> data_syncs_begun{0};  // reset by the test at will
  std::atomic<int> fs_syncs{0};
  std::atomic<int> dir_syncs{0};
  std::atomic<int> writes{0};
  std::atomic<int> journal_writes{0};
  // Set by the test: a sync counts in synced_while_in_queue when this file
  // already exists (the rename came before the sync).
  std::string watch_path;
  std::atomic<int> synced_while_in_queue{0};

  farm::StatusOr<farm::UniqueFd> CreateExclusive(
      const std::string& p) override {
    return real()->CreateExclusive(p);
  }
  farm::StatusOr<farm::UniqueFd> OpenAppend(const std::string& p) override {
    return real()->OpenAppend(p);
  }
  farm::StatusOr<farm::UniqueFd> OpenRewrite(const std::string& p) override {
    return real()->OpenRewrite(p);
  }
  farm::StatusOr<farm::UniqueFd> CreateAnonymous(
      const std::string& dir) override {
    return real()->CreateAnonymous(dir);
  }
  farm::StatusOr<uint64_t> FileSize(const std::string& p) override {
    return real()->FileSize(p);
  }
  farm::Status Copy(int from, uint64_t size, int to,
                    const std::string& p) override {
    if (no_space || no_space_for_files)
      return farm::Status::FromErrno("copy into " + p, ENOSPC);
    return real()->Copy(from, size, to, p);
  }
  farm::StatusOr<farm::UniqueFd> OpenDirectory(const std::string& p) override {
    return real()->OpenDirectory(p);
  }
  farm::Status Write(int fd, std::string_view data,
                     const std::string& p) override {
    if (hold_first_write.exchange(false)) {
      while (!released) usleep(1000);
    }
    if (hold_writes_for_a_sync) {
      for (int i = 0; i < 5000 && data_syncs_begun == 0; ++i) usleep(1000);
      if (data_syncs_begun > 0) ++writes_after_a_sync;
    }
    if (no_space_for_files)
      return farm::Status::FromErrno("write " + p, ENOSPC);
    if (no_space) {
      // Like a real full disk: part of the data may land before the error.
      (void)real()->Write(fd, data.substr(0, data.size() / 2), p);
      return farm::Status::FromErrno("write " + p, ENOSPC);
    }
    ++writes;
    return real()->Write(fd, data, p);
  }
  farm::Status WriteAt(int fd, std::string_view data, uint64_t offset,
                       const std::string& p) override {
    int call = ++journal_write_calls;
    if (call >= fail_journal_writes_from && call <= fail_journal_writes_through)
      return farm::Status::FromErrno("write " + p, EIO);
    if (no_space) return farm::Status::FromErrno("write " + p, ENOSPC);
    if (p == fail_journal_writes_to)
      return farm::Status::FromErrno("write " + p, EIO);
    if (no_space_past > 0 && offset + data.size() > no_space_past)
      return farm::Status::FromErrno("write " + p, ENOSPC);
    ++journal_writes;
    return real()->WriteAt(fd, data, offset, p);
  }
  farm::Status Write2(int fd, std::string_view a, std::string_view b,
                      const std::string& p) override {
    std::string both = std::string(a) + std::string(b);
    return Write(fd, both, p);  // the same faults as Write
  }
  void StartWriteback(int fd) override { real()->StartWriteback(fd); }
  farm::Status DataSync(int fd, const std::string& p) override {
    ++data_syncs_begun;
    ++data_syncs;
    Watch();
    if (fail_sync) return farm::Status::FromErrno("fdatasync " + p, EIO);
    if (data_syncs == fail_data_sync_number) {
      ++syncfs_failures_left;
      return farm::Status::FromErrno("fdatasync " + p, EIO);
    }
    return real()->DataSync(fd, p);
  }
  farm::Status SyncFilesystem(int fd, const std::string& p) override {
    ++fs_syncs;
    Watch();
    if (hold_syncfs) {
      for (int i = 0; i < 10000 && !syncfs_released; ++i) usleep(1000);
      bool fail = fail_held_syncfs;
      ++held_syncfs_done;
      if (fail) return farm::Status::FromErrno("syncfs " + p, EIO);
    }
    if (fail_sync) return farm::Status::FromErrno("syncfs " + p, EIO);
    if (syncfs_failures_left > 0) {
      --syncfs_failures_left;
      return farm::Status::FromErrno("syncfs " + p, EIO);
    }
    if (!watch_queue_dir.empty()) {
      for (auto& e :
           std::filesystem::recursive_directory_iterator(watch_queue_dir)) {
        if (e.is_regular_file()) {
          ++synced_with_a_queue_file;
          break;
        }
      }
    }
    return real()->SyncFilesystem(fd, p);
  }
  farm::Status Sync(int fd, const std::string& p) override {
    ++dir_syncs;
    return real()->Sync(fd, p);
  }
  farm::Status Truncate(int fd, uint64_t size, const std::string& p) override {
    return real()->Truncate(fd, size, p);
  }
  farm::StatusOr<bool> RenameNoReplace(const std::string& a,
                                       const std::string& b) override {
    return real()->RenameNoReplace(a, b);
  }
  farm::Status Rename(const std::string& a, const std::string& b) override {
    return real()->Rename(a, b);
  }
  farm::Status Unlink(const std::string& p) override {
    return real()->Unlink(p);
  }
  farm::Status MakeDirectory(const std::string& p, mode_t m) override {
    return real()->MakeDirectory(p, m);
  }

 private:
  static SpoolEnv* real() { return PosixSpoolEnv(); }
  void Watch() {
    if (!watch_path.empty() && ::access(watch_path.c_str(), F_OK) == 0)
      ++synced_while_in_queue;
  }
};

std::string ReadWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

int CountFiles(const std::string& dir) {
  int n = 0;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

class SpoolStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/spool_store_test.XXXXXX";
    root_ = ::mkdtemp(tmpl);
    spool_ = root_ + "/spool";
    base_ = event_base_new();
    tasks_ = std::move(*LoopTasks::Create(base_));
  }
  void TearDown() override {
    store_.reset();
    tasks_.reset();
    event_base_free(base_);
    std::filesystem::remove_all(root_);
  }
  // Queues `n` 5,000-byte creates behind a held first write, releases it,
  // waits for all of them and returns how many failed.
  int CreateBehindAHeldWrite(int n) {
    env_.hold_first_write = true;
    int done = 0, failed = 0;
    for (int i = 0; i < n; ++i) {
      store_->Create(Envelope(), std::string(5000, 'x'), [&](auto r) {
        ++done;
        if (!r.ok()) ++failed;
      });
    }
    env_.released = true;
    RunUntil([&] { return done == n; });
    return failed;
  }
  // The qid of the create whose write the env holds (its temp file in tmp/
  // names it); "" when none appears within 5 s.
  std::string HeldQid() {
    for (int i = 0; i < 5000; ++i) {
      for (auto& e : std::filesystem::directory_iterator(spool_ + "/tmp"))
        return e.path().stem().string();
      usleep(1000);
    }
    return "";
  }
  void OpenStore(int threads = 1, size_t syncfs_min_batch = 1) {
    FileSpoolStore::Options options;
    options.spool_dir = spool_;
    options.io_threads = threads;
    options.syncfs_min_batch = syncfs_min_batch;
    options.env = &env_;
    options.spare_files = spare_files_;
    options.clock = clock_;
    options.journal_bytes = journal_bytes_;
    auto store = FileSpoolStore::Open(options, tasks_.get());
    ASSERT_TRUE(store.ok()) << store.status().message();
    store_ = std::move(*store);
  }
  // Runs the loop until `pred` holds (each completion runs on it).
  template <typename Pred>
  void RunUntil(Pred pred) {
    for (int i = 0; i < 20000 && !pred(); ++i)
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(500);
    ASSERT_TRUE(pred());
  }
  farm::Status AppendSpillOne(const std::shared_ptr<BodySpill>& spill,
                              std::string data) {
    std::optional<farm::Status> written;
    store_->AppendSpill(spill, std::move(data),
                        [&](farm::Status s) { written = s; });
    RunUntil([&] { return written.has_value(); });
    return *written;
  }
  farm::StatusOr<SpoolStore::Created> CreateFromSpillOne(
      std::shared_ptr<BodySpill> spill) {
    std::optional<farm::StatusOr<SpoolStore::Created>> got;
    store_->CreateFromSpill(Envelope(), std::move(spill),
                            [&](auto r) { got = std::move(r); });
    RunUntil([&] { return got.has_value(); });
    return std::move(*got);
  }
  farm::StatusOr<SpoolStore::Created> CreateOne(std::string body) {
    std::optional<farm::StatusOr<SpoolStore::Created>> got;
    store_->Create(Envelope(), std::move(body),
                   [&](auto r) { got = std::move(r); });
    RunUntil([&] { return got.has_value(); });
    return std::move(*got);
  }
  // Appends a state record with `attempts` (cutting the file to
  // `truncate_to` first when non-zero) and waits for it.
  farm::Status AppendOne(const std::string& qid, uint32_t attempts,
                         uint64_t truncate_to = 0) {
    spool::JobState state;
    state.set_sequence(1);
    state.set_attempts(attempts);
    std::optional<farm::Status> appended;
    store_->AppendState(qid, state, truncate_to,
                        [&](farm::Status s) { appended = s; });
    RunUntil([&] { return appended.has_value(); });
    return *appended;
  }
  farm::Status RemoveOne(const std::string& qid) {
    std::optional<farm::Status> removed;
    store_->Remove(qid, SpoolStore::Reuse::kAllowed,
                   [&](farm::Status s) { removed = s; });
    RunUntil([&] { return removed.has_value(); });
    return *removed;
  }
  static spool::Envelope Envelope() {
    spool::Envelope e;
    e.set_sender("a@example.com");
    auto* r = e.add_recipients();
    r->set_index(0);
    r->set_address("b@example.org");
    return e;
  }

  std::string root_, spool_;
  event_base* base_ = nullptr;
  std::unique_ptr<LoopTasks> tasks_;
  FaultEnv env_;
  size_t spare_files_ = 1024;
  uint64_t journal_bytes_ = 0;    // the journal tests turn it on
  farm::Clock* clock_ = nullptr;  // the real one
  std::unique_ptr<FileSpoolStore> store_;
};

TEST_F(SpoolStoreTest, CreateIsReadableAtTheReportedPath) {
  OpenStore();
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "Subject: x\r\n\r\nbody\r\n",
                 [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  ASSERT_TRUE(got->ok()) << got->status().message();
  EXPECT_EQ((*got)->path, store_->PathOf((*got)->qid));
  auto file = ReadQueueFile((*got)->path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->envelope.qid(), (*got)->qid);
  EXPECT_EQ(file->body_offset, (*got)->body_offset);
  struct stat st;
  ASSERT_EQ(::stat(spool_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0750u);
}

TEST_F(SpoolStoreTest, ConcurrentCreatesShareSyncs) {
  OpenStore(1);
  EXPECT_EQ(CreateBehindAHeldWrite(50), 0);
  GroupCommitStats stats = store_->stats();
  EXPECT_EQ(stats.files, 50u);
  // The first batch is whatever was queued when the worker woke (1 or a few);
  // everything queued behind the held write goes in one more batch.
  EXPECT_LE(stats.batches, 3u);
  EXPECT_GE(stats.max_batch, 25u);
  EXPECT_LE(stats.dir_syncs, 6u);  // one per batch unless the 65 s digit turned
  // Every batch is one syncfs (the default syncfs_min_batch is 1).
  EXPECT_EQ(env_.data_syncs.load(), 0);
  EXPECT_LE(env_.fs_syncs.load(), 3);
  EXPECT_EQ(stats.dir_syncs, 0u);
  EXPECT_EQ(stats.fs_syncs + stats.data_syncs,
            static_cast<uint64_t>(env_.fs_syncs + env_.data_syncs));
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 50);
}

TEST_F(SpoolStoreTest, FullDiskFailsCleanlyAndRecovers) {
  OpenStore();
  env_.no_space = true;
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), std::string(100000, 'y'),
                 [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  ASSERT_FALSE(got->ok());
  EXPECT_EQ(got->status().code(), farm::Status::Code::kNoSpace);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
  EXPECT_EQ(CountFiles(spool_ + "/tmp"), 0);
  env_.no_space = false;
  got.reset();
  store_->Create(Envelope(), "ok\r\n", [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  EXPECT_TRUE(got->ok());
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 1);
}

// A body written to its spill file piece by piece as it arrives becomes a
// queue file like any other: header, the body's bytes, a checksum over them.
TEST_F(SpoolStoreTest, SpilledBodyIsCreatedWholeAndChecked) {
  OpenStore(2);
  auto spill = std::make_shared<BodySpill>();
  std::string body;
  for (int i = 0; i < 20; ++i) {
    std::string piece(100000, static_cast<char>('a' + i));
    body += piece;
    farm::Status written = AppendSpillOne(spill, piece);
    ASSERT_TRUE(written.ok()) << written.message();
  }
  EXPECT_EQ(spill->size, body.size());
  // The spill file has no name: spool/tmp/ shows nothing of it.
  EXPECT_EQ(CountFiles(spool_ + "/tmp"), 0);
  std::weak_ptr<BodySpill> watch = spill;
  auto got = CreateFromSpillOne(std::move(spill));
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_TRUE(watch.expired()) << "the store kept the spill file";
  auto file = ReadQueueFile(got->path);  // verifies the body checksum
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->envelope.body_size(), body.size());
  EXPECT_EQ(ReadWhole(got->path).substr(got->body_offset), body);
  EXPECT_EQ(store_->stats().fs_syncs, 1u);  // the same durable commit
}

TEST_F(SpoolStoreTest, SpillOnAFullDiskFailsAndLeavesNothing) {
  OpenStore();
  auto spill = std::make_shared<BodySpill>();
  ASSERT_TRUE(AppendSpillOne(spill, std::string(300000, 'x')).ok());
  env_.no_space = true;
  EXPECT_EQ(AppendSpillOne(spill, std::string(300000, 'y')).code(),
            farm::Status::Code::kNoSpace);
  // The copy into the queue file fails the same way, and nothing is left.
  auto got = CreateFromSpillOne(std::move(spill));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), farm::Status::Code::kNoSpace);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
  EXPECT_EQ(CountFiles(spool_ + "/tmp"), 0);
}

TEST_F(SpoolStoreTest, FailedSyncfsFailsTheWholeBatch) {
  OpenStore(1);
  env_.hold_first_write = true;
  env_.fail_sync = true;
  int done = 0, failed = 0;
  for (int i = 0; i < 10; ++i) {
    store_->Create(Envelope(), "x\r\n", [&](auto r) {
      ++done;
      if (!r.ok()) ++failed;
    });
  }
  env_.released = true;
  RunUntil([&] { return done == 10; });
  EXPECT_EQ(failed, 10);
  EXPECT_GE(env_.fs_syncs.load(), 1);
  EXPECT_EQ(CountFiles(spool_ + "/queue") + CountFiles(spool_ + "/tmp"), 0);
}

TEST_F(SpoolStoreTest, FailedSyncIsNeverAcknowledged) {
  OpenStore(1, /*syncfs_min_batch=*/2);
  env_.fail_sync = true;
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  ASSERT_FALSE(got->ok());
  EXPECT_NE(got->status().message().find("fdatasync"), std::string::npos);
  EXPECT_EQ(CountFiles(spool_ + "/queue") + CountFiles(spool_ + "/tmp"), 0);
}

TEST_F(SpoolStoreTest, AppendStateThenRemove) {
  OpenStore(2);
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  ASSERT_TRUE(got->ok());
  std::string qid = (*got)->qid;
  farm::Status appended = AppendOne(qid, 3);
  ASSERT_TRUE(appended.ok()) << appended.message();
  auto file = ReadQueueFile(store_->PathOf(qid));
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->state.attempts(), 3u);
  EXPECT_TRUE(RemoveOne(qid).ok());
  EXPECT_NE(::access(store_->PathOf(qid).c_str(), F_OK), 0);
}

TEST_F(SpoolStoreTest, AppendTruncatesATornTail) {
  OpenStore();
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  std::string path = (*got)->path;
  uint64_t good = std::filesystem::file_size(path);
  FILE* f = fopen(path.c_str(), "a");
  fputs("MFS1\x05garbage", f);
  fclose(f);
  spool::JobState state;
  state.set_attempts(7);
  std::optional<farm::Status> appended;
  store_->AppendState((*got)->qid, state, good,
                      [&](farm::Status s) { appended = s; });
  RunUntil([&] { return appended.has_value(); });
  auto file = ReadQueueFile(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->state_records, 1);
  EXPECT_EQ(file->state.attempts(), 7u);
  EXPECT_EQ(file->torn_bytes, 0u);
}

// The single-file commit below syncfs_min_batch: the file is in queue/ before
// its fdatasync (so the sync's journal commit carries the rename), then one
// directory fsync.
TEST_F(SpoolStoreTest, SingleCreateRenamesBeforeItsSync) {
  OpenStore(1, /*syncfs_min_batch=*/2);
  env_.hold_first_write = true;
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  // The write is held: its temp file exists and names the qid.
  std::string qid = HeldQid();
  ASSERT_FALSE(qid.empty());
  env_.watch_path = store_->PathOf(qid);
  env_.released = true;
  RunUntil([&] { return got.has_value(); });
  ASSERT_TRUE(got->ok()) << got->status().message();
  EXPECT_EQ((*got)->qid, qid);
  EXPECT_EQ(env_.data_syncs.load(), 1);
  EXPECT_EQ(env_.synced_while_in_queue.load(), 1);
  EXPECT_EQ(env_.dir_syncs.load(), 1);
  EXPECT_EQ(env_.writes.load(), 1);  // header and body in one write
  GroupCommitStats stats = store_->stats();
  EXPECT_EQ(stats.dir_syncs, 1u);
  EXPECT_EQ(stats.data_syncs, 1u);
}

// The default: one syncfs per batch, a single file included, after the
// renames; no directory fsync (syncfs writes back the directories too).
TEST_F(SpoolStoreTest, SingleCreateIsOneSyncfsAfterItsRename) {
  OpenStore();
  env_.hold_first_write = true;
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  std::string qid = HeldQid();
  ASSERT_FALSE(qid.empty());
  env_.watch_path = store_->PathOf(qid);
  env_.released = true;
  RunUntil([&] { return got.has_value(); });
  ASSERT_TRUE(got->ok()) << got->status().message();
  EXPECT_EQ(env_.fs_syncs.load(), 1);
  EXPECT_EQ(env_.synced_while_in_queue.load(), 1);
  EXPECT_EQ(env_.data_syncs.load(), 0);
  EXPECT_EQ(env_.dir_syncs.load(), 0);
}

// With syncfs from two writes on, a batch needs no directory fsync: syncfs
// writes back the directories too, and the renames came before it.
TEST_F(SpoolStoreTest, SyncfsBatchNeedsNoDirectorySync) {
  OpenStore(1, /*syncfs_min_batch=*/2);
  EXPECT_EQ(CreateBehindAHeldWrite(20), 0);
  GroupCommitStats stats = store_->stats();
  EXPECT_GE(stats.fs_syncs, 1u);
  // Only a batch of one (the first, taken before the others were queued)
  // fsyncs its directory.
  EXPECT_EQ(stats.dir_syncs, stats.data_syncs);
  EXPECT_LE(stats.dir_syncs, 1u);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 20);
}

// A file renamed into queue/ whose sync fails is removed again: never
// acknowledged, never a job.
TEST_F(SpoolStoreTest, FailedSyncRemovesTheRenamedFile) {
  OpenStore(1, /*syncfs_min_batch=*/2);
  env_.hold_first_write = true;
  env_.fail_sync = true;
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  std::string qid = HeldQid();
  ASSERT_FALSE(qid.empty());
  env_.watch_path = store_->PathOf(qid);
  env_.released = true;
  RunUntil([&] { return got.has_value(); });
  EXPECT_FALSE(got->ok());
  EXPECT_EQ(env_.synced_while_in_queue.load(), 1);  // it was in queue/
  EXPECT_NE(::access(store_->PathOf(qid).c_str(), F_OK), 0);
  EXPECT_EQ(CountFiles(spool_ + "/queue") + CountFiles(spool_ + "/tmp"), 0);
}

// Removals cost no sync at all (at-least-once covers a lost unlink).
TEST_F(SpoolStoreTest, RemoveIsNotSynced) {
  OpenStore();
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) { got = std::move(r); });
  RunUntil([&] { return got.has_value(); });
  ASSERT_TRUE(got->ok());
  int data = env_.data_syncs, fs = env_.fs_syncs, dir = env_.dir_syncs;
  std::optional<farm::Status> removed;
  store_->Remove((*got)->qid, SpoolStore::Reuse::kAllowed,
                 [&](farm::Status s) { removed = s; });
  RunUntil([&] { return removed.has_value(); });
  EXPECT_TRUE(removed->ok());
  EXPECT_NE(::access((*got)->path.c_str(), F_OK), 0);
  EXPECT_EQ(env_.data_syncs.load(), data);
  EXPECT_EQ(env_.fs_syncs.load(), fs);
  EXPECT_EQ(env_.dir_syncs.load(), dir);
}

// With two I/O threads: creates queued while a batch commits wake nobody
// and are taken by the committer when it is done; a read queued then is
// served by the other thread at once, while the commit is still held.
TEST_F(SpoolStoreTest, CommitsQueueBehindTheCommitterReadsDoNot) {
  OpenStore(2);
  auto existing = CreateOne("Subject: old\r\n\r\nx\r\n");
  ASSERT_TRUE(existing.ok());
  env_.hold_first_write = true;
  int done = 0, failed = 0;
  for (int i = 0; i < 20; ++i) {
    store_->Create(Envelope(), std::string(5000, 'x'), [&](auto r) {
      ++done;
      if (!r.ok()) ++failed;
    });
  }
  ASSERT_FALSE(HeldQid().empty());  // the first write is held
  std::optional<farm::StatusOr<QueueFile>> read;
  store_->Read(existing->path, [&](auto r) { read = std::move(r); });
  RunUntil([&] { return read.has_value(); });
  EXPECT_EQ(done, 0);  // the commit is still held
  ASSERT_TRUE(read->ok()) << read->status().message();
  env_.released = true;
  RunUntil([&] { return done == 20; });
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 21);
}

// A read of a file whose create is still in flight (an adopt racing an
// injection) completes only after the create's own completion.
TEST_F(SpoolStoreTest, ReadOfAnUnacknowledgedFileWaitsForItsCreate) {
  OpenStore(2);
  env_.hold_first_write = true;
  std::vector<std::string> order;
  std::optional<farm::StatusOr<SpoolStore::Created>> got;
  store_->Create(Envelope(), "x\r\n", [&](auto r) {
    order.push_back("create");
    got = std::move(r);
  });
  std::string qid = HeldQid();
  ASSERT_FALSE(qid.empty());
  std::optional<farm::StatusOr<QueueFile>> read;
  store_->Read(store_->PathOf(qid), [&](auto r) {
    order.push_back("read");
    read = std::move(r);
  });
  env_.released = true;
  RunUntil([&] { return read.has_value(); });
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], "create");
  EXPECT_EQ(order[1], "read");
  ASSERT_TRUE(read->ok()) << read->status().message();
  EXPECT_EQ((*read)->envelope.qid(), qid);
}

TEST_F(SpoolStoreTest, SecondStoreOnTheSameSpoolIsRefused) {
  OpenStore();
  FileSpoolStore::Options options;
  options.spool_dir = spool_;
  auto second = FileSpoolStore::Open(options, tasks_.get());
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.status().message().find(
                "locked by another mailfarm-scheduler (pid " +
                std::to_string(getpid())),
            std::string::npos)
      << second.status().message();
}

TEST_F(SpoolStoreTest, LeftoverTempFilesAreRemovedAtOpen) {
  std::filesystem::create_directories(spool_ + "/tmp");
  FILE* f = fopen((spool_ + "/tmp/0192a3b4c5d60001.tmp").c_str(), "w");
  fputs("half", f);
  fclose(f);
  OpenStore();
  EXPECT_EQ(CountFiles(spool_ + "/tmp"), 0);
}

TEST_F(SpoolStoreTest, QuarantineMovesToCorrupt) {
  OpenStore();
  std::string path = spool_ + "/queue/0/0192a3b4c5d60001";
  FILE* f = fopen(path.c_str(), "w");
  fputs("junk", f);
  fclose(f);
  std::optional<farm::StatusOr<QueueFile>> read;
  store_->Read(path, [&](auto r) { read = std::move(r); });
  RunUntil([&] { return read.has_value(); });
  EXPECT_FALSE(read->ok());
  std::optional<farm::Status> moved;
  store_->Quarantine(path, [&](farm::Status s) { moved = s; });
  RunUntil([&] { return moved.has_value(); });
  EXPECT_TRUE(moved->ok());
  EXPECT_EQ(::access((spool_ + "/corrupt/0192a3b4c5d60001").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace mailfarm::scheduler

namespace mailfarm::scheduler {
namespace {

uint64_t SizeOf(const std::string& path) {
  return std::filesystem::file_size(path);
}

TEST_F(SpoolStoreTest, RemovedFileIsRewrittenWholeByTheNextCreate) {
  OpenStore();
  auto first = CreateOne(std::string(20000, 'a'));
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(RemoveOne(first->qid).ok());
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 1);

  const std::string body = "Subject: short\r\n\r\nb\r\n";
  auto second = CreateOne(body);
  ASSERT_TRUE(second.ok()) << second.status().message();
  EXPECT_EQ(store_->stats().reused, 1u);
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 0);
  // The old job's 20,000 bytes are gone: the file is exactly the new one.
  auto file = ReadQueueFile(second->path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->envelope.qid(), second->qid);
  EXPECT_EQ(SizeOf(second->path), second->body_offset + body.size());
  // State records append after the new body, not after a stale tail.
  ASSERT_TRUE(AppendOne(second->qid, 2).ok());
  file = ReadQueueFile(second->path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->state.attempts(), 2u);
}

// After a crash a leftover spare's inode may also be a live job's file (the
// renames that made it a spare were not synced), so it is never rewritten.
TEST_F(SpoolStoreTest, SpareLeftByAnEarlierRunIsRemovedNotReused) {
  std::filesystem::create_directories(spool_ + "/spare");
  {
    std::ofstream junk(spool_ + "/spare/0000000000000001");
    junk << std::string(9000, 'j');
  }
  OpenStore();
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 0);
  auto made = CreateOne("x\r\n");
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(store_->stats().reused, 0u);
  EXPECT_TRUE(ReadQueueFile(made->path).ok());
}

TEST_F(SpoolStoreTest, RemovedFileHoldingItsOldJobIsNotTheNewOne) {
  // What a crash between a spare's rename into queue/ and its rewrite
  // reaching the disk can leave: a new qid's name over the old job's bytes.
  OpenStore();
  auto old_job = CreateOne("old\r\n");
  auto new_job = CreateOne("new\r\n");
  ASSERT_TRUE(old_job.ok() && new_job.ok());
  std::filesystem::copy_file(old_job->path, new_job->path,
                             std::filesystem::copy_options::overwrite_existing);
  auto file = ReadQueueFile(new_job->path);
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.status().message().find(old_job->qid), std::string::npos)
      << file.status().message();
}

TEST_F(SpoolStoreTest, SparesAreBoundedInNumberAndSize) {
  spare_files_ = 2;
  OpenStore();
  std::vector<std::string> qids;
  for (int i = 0; i < 3; ++i) {
    auto made = CreateOne("x\r\n");
    ASSERT_TRUE(made.ok());
    qids.push_back(made->qid);
  }
  auto big = CreateOne(std::string(100000, 'b'));  // over 64 KiB: not kept
  ASSERT_TRUE(big.ok());
  for (const auto& qid : qids) ASSERT_TRUE(RemoveOne(qid).ok());
  ASSERT_TRUE(RemoveOne(big->qid).ok());
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 2);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
}

TEST_F(SpoolStoreTest, FileThatMayStillBeOpenIsNotReused) {
  OpenStore();
  auto made = CreateOne("x\r\n");
  ASSERT_TRUE(made.ok());
  std::optional<farm::Status> removed;
  store_->Remove(made->qid, SpoolStore::Reuse::kNever,
                 [&](farm::Status s) { removed = s; });
  RunUntil([&] { return removed.has_value(); });
  ASSERT_TRUE(removed->ok());
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 0);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
}

TEST_F(SpoolStoreTest, NoSparesWhenTurnedOff) {
  spare_files_ = 0;
  OpenStore();
  auto made = CreateOne("x\r\n");
  ASSERT_TRUE(made.ok());
  ASSERT_TRUE(RemoveOne(made->qid).ok());
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 0);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
}

TEST_F(SpoolStoreTest, FullDiskGivesTheSparesBack) {
  OpenStore();
  std::vector<std::string> qids;
  for (int i = 0; i < 3; ++i) {
    auto made = CreateOne("x\r\n");
    ASSERT_TRUE(made.ok());
    qids.push_back(made->qid);
  }
  for (const auto& qid : qids) ASSERT_TRUE(RemoveOne(qid).ok());
  ASSERT_EQ(CountFiles(spool_ + "/spare"), 3);
  env_.no_space = true;
  auto failed = CreateOne(std::string(5000, 'y'));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), farm::Status::Code::kNoSpace);
  EXPECT_EQ(CountFiles(spool_ + "/spare"), 0);
  EXPECT_EQ(CountFiles(spool_ + "/queue") + CountFiles(spool_ + "/tmp"), 0);
  env_.no_space = false;
  auto made = CreateOne("ok\r\n");
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 1);
}

}  // namespace
}  // namespace mailfarm::scheduler

namespace mailfarm::scheduler {
namespace {

class JournaledSpoolTest : public SpoolStoreTest {
 protected:
  void SetUp() override {
    SpoolStoreTest::SetUp();
    journal_bytes_ = 2 << 20;
  }
  void Reopen() {
    store_.reset();
    OpenStore();
  }
  // Reopens the store: nothing to restore, and every file in `made` valid.
  void ReopenAndExpectIntact(const std::vector<SpoolStore::Created>& made) {
    Reopen();
    EXPECT_EQ(store_->stats().restored, 0u);
    for (const auto& m : made) ASSERT_TRUE(ReadQueueFile(m.path).ok());
  }
  // Creates `n` 5 KB messages one at a time.
  void CreateMany(int n, std::vector<SpoolStore::Created>* made) {
    for (int i = 0; i < n; ++i) {
      auto m = CreateOne(std::string(5000, 'a'));
      ASSERT_TRUE(m.ok()) << m.status().message();
      made->push_back(*m);
    }
  }
  // Creates 5 KB messages one at a time until a syncfs has begun (the
  // first journal file being full, its checkpoint starts): 1 MiB per file,
  // 8 KiB per create.
  void FillUntilACheckpointBegins(std::vector<SpoolStore::Created>* made) {
    int syncfs_before = env_.fs_syncs.load();
    for (int i = 0; i < 200 && env_.fs_syncs.load() == syncfs_before; ++i) {
      auto m = CreateOne(std::string(5000, 'a'));
      ASSERT_TRUE(m.ok()) << m.status().message();
      made->push_back(*m);
    }
    ASSERT_GT(env_.fs_syncs.load(), syncfs_before) << "no checkpoint began";
  }
  // One acknowledged message, then the store closed: the state a test then
  // damages as a crash would before the next open.
  SpoolStore::Created CreateAndClose(std::string body) {
    OpenStore();
    auto made = CreateOne(std::move(body));
    EXPECT_TRUE(made.ok()) << made.status().message();
    store_.reset();
    return made.ok() ? *made : SpoolStore::Created{};
  }
};

TEST_F(JournaledSpoolTest, ABatchIsOneJournalSyncNotASyncfs) {
  OpenStore(1);
  // Opening syncs once itself (recovery's syncfs, the first checkpoint).
  int syncfs_at_open = env_.fs_syncs.load();
  int fdatasyncs_at_open = env_.data_syncs.load();
  EXPECT_EQ(CreateBehindAHeldWrite(40), 0);
  GroupCommitStats stats = store_->stats();
  EXPECT_EQ(stats.files, 40u);
  EXPECT_GE(stats.journal_syncs, 1u);
  EXPECT_LE(stats.journal_syncs, 3u);
  EXPECT_EQ(stats.fs_syncs, 0u);
  EXPECT_EQ(env_.fs_syncs.load(), syncfs_at_open);
  EXPECT_EQ(env_.data_syncs.load() - fdatasyncs_at_open,
            static_cast<int>(stats.journal_syncs));
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 40);
}

// The journal's fdatasync runs while the batch's files are written: a file
// write held until a sync has begun is let through by the journal's, and the
// message is acknowledged once both are done.
TEST_F(JournaledSpoolTest, JournalSyncsWhileTheFilesAreWritten) {
  OpenStore();
  env_.data_syncs_begun = 0;
  env_.hold_writes_for_a_sync = true;
  auto made = CreateOne("Subject: overlap\r\n\r\nbody\r\n");
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(env_.writes_after_a_sync.load(), 1);
  EXPECT_EQ(store_->stats().journal_syncs, 1u);
  EXPECT_EQ(store_->stats().fs_syncs, 0u);
  EXPECT_TRUE(ReadQueueFile(made->path).ok());
}

// The journal took the create before its file failed to be written: the
// message was refused, so the open after a crash must not bring it back.
TEST_F(JournaledSpoolTest, CreateWhoseFileFailedIsNotRestored) {
  OpenStore();
  env_.no_space_for_files = true;
  int journal_writes = env_.journal_writes.load();
  auto failed = CreateOne("Subject: refused\r\n\r\nbody\r\n");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), farm::Status::Code::kNoSpace);
  EXPECT_GT(env_.journal_writes.load(), journal_writes);  // it was journaled
  EXPECT_EQ(CountFiles(spool_ + "/queue") + CountFiles(spool_ + "/tmp"), 0);
  env_.no_space_for_files = false;
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
  // And the spool takes messages again.
  auto made = CreateOne("ok\r\n");
  ASSERT_TRUE(made.ok()) << made.status().message();
}

// The clock stepped back across a restart (here: stood still): ids go on
// from the newest one the journal holds or its last checkpoint recorded, so
// the new messages neither collide with the jobs in the spool nor need a
// check each.
TEST_F(JournaledSpoolTest, IdsGoOnFromTheNewestTheJournalRecorded) {
  farm::FakeClock clock;
  clock_ = &clock;
  auto kept = CreateAndClose("Subject: kept\r\n\r\nfirst\r\n");
  OpenStore();  // the same clock: the journal holds kept's create
  auto next = CreateOne("Subject: next\r\n\r\nsecond\r\n");
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_GT(next->qid, kept.qid);
  // A large message is made durable by syncfs and is in no journal; the
  // checkpoint that follows records its id.
  auto large = CreateOne(std::string(300 * 1024, 'L'));
  ASSERT_TRUE(large.ok()) << large.status().message();
  EXPECT_EQ(store_->stats().journal_syncs, 1u);
  Reopen();
  auto last = CreateOne("Subject: last\r\n\r\nthird\r\n");
  ASSERT_TRUE(last.ok()) << last.status().message();
  EXPECT_GT(last->qid, large->qid);
  EXPECT_EQ(store_->stats().restored, 0u);
  for (const auto& made : {kept, *next, *large, *last})
    EXPECT_TRUE(ReadQueueFile(made.path).ok()) << made.qid;
}

// The same with no journal to go on from (the spool's jobs were made while it
// was turned off): ids go on past the files in queue/.
TEST_F(JournaledSpoolTest, IdsGoOnPastTheJobsInTheSpool) {
  farm::FakeClock clock;
  clock_ = &clock;
  journal_bytes_ = 0;
  auto kept = CreateAndClose("Subject: kept\r\n\r\nfirst\r\n");
  journal_bytes_ = 2 << 20;
  std::string before = ReadWhole(kept.path);
  ASSERT_FALSE(before.empty());
  OpenStore();  // the same clock
  auto next = CreateOne("Subject: other\r\n\r\nsecond\r\n");
  ASSERT_TRUE(next.ok()) << next.status().message();
  EXPECT_GT(next->qid, kept.qid);
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
  EXPECT_EQ(ReadWhole(kept.path), before);
  EXPECT_TRUE(ReadQueueFile(next->path).ok());
}

// Should a file with the next id appear in queue/ all the same (not made by
// this store), the create is refused, and the record undoing its journaled
// create is a cancel, not a removal: the next open neither overwrites nor
// removes that file.
TEST_F(JournaledSpoolTest, CreateWhoseNameIsTakenLeavesThatFileAlone) {
  farm::FakeClock clock;
  clock_ = &clock;
  OpenStore();
  QueueIdGenerator same;  // the store's generator, unseeded: an empty spool
  std::string qid = same.Next(clock.NowUnixMs());
  std::string foreign = store_->PathOf(qid);
  { std::ofstream(foreign, std::ios::binary) << "not this store's"; }
  auto refused = CreateOne("Subject: other\r\n\r\nsecond\r\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("already in use"),
            std::string::npos);
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
  EXPECT_EQ(store_->stats().re_removed, 0u);
  EXPECT_EQ(ReadWhole(foreign), "not this store's");
}

// The removal record that undoes a refused create is synced before the
// refusal is reported: a power cut then cannot keep the create and lose it.
// The same when the cancel record cannot be written and the syncfs that
// would void the create fails too: the files rewritten after that failed
// syncfs (at the stop here) still leave the other file alone.
TEST_F(JournaledSpoolTest, UnrecordedCancelStillLeavesThatFileAlone) {
  farm::FakeClock clock;
  clock_ = &clock;
  OpenStore();
  QueueIdGenerator same;
  std::string foreign = store_->PathOf(same.Next(clock.NowUnixMs()));
  { std::ofstream(foreign, std::ios::binary) << "not this store's"; }
  // The batch's journal commit succeeds, the cancel record's write fails,
  // and both syncfs calls after it.
  env_.fail_journal_writes_from = env_.journal_write_calls.load() + 2;
  env_.fail_journal_writes_through = env_.fail_journal_writes_from.load();
  env_.syncfs_failures_left = 2;
  ASSERT_FALSE(CreateOne("Subject: other\r\n\r\nsecond\r\n").ok());
  EXPECT_EQ(env_.syncfs_failures_left.load(), 0);
  Reopen();
  EXPECT_EQ(ReadWhole(foreign), "not this store's");
}

TEST_F(JournaledSpoolTest, RefusedCreateIsUndoneDurably) {
  OpenStore();
  int syncs = env_.data_syncs.load();
  env_.no_space_for_files = true;
  auto failed = CreateOne("Subject: refused\r\n\r\nbody\r\n");
  ASSERT_FALSE(failed.ok());
  // The batch's journal commit, then the removal record's.
  EXPECT_EQ(env_.data_syncs.load() - syncs, 2);
  env_.no_space_for_files = false;
}

// The removal record undoing a refused create fails to be written, or to be
// synced: a checkpoint voids the create's record instead, so a crash right
// after the refusal (the journals as they are then) does not bring the
// message back.
class RefusalRecordTest : public JournaledSpoolTest {
 protected:
  void RefuseThenCrashAndReopen() {
    env_.no_space_for_files = true;
    auto failed = CreateOne("Subject: refused\r\n\r\nbody\r\n");
    ASSERT_FALSE(failed.ok());
    env_.no_space_for_files = false;
    // Voided: neither file holds a record (the test cannot lose the page
    // cache's copy of a record whose fdatasync failed, so this is checked
    // besides the crash below).
    for (const std::string& path : JournalPair::Paths(spool_)) {
      std::filesystem::copy_file(path, path + ".crash");
      std::vector<SpoolJournal::Entry> records;
      ASSERT_TRUE(SpoolJournal::Open(PosixSpoolEnv(), path + ".crash", 1 << 20,
                                     &records)
                      .ok());
      EXPECT_TRUE(records.empty()) << path;
    }
    store_.reset();
    for (const std::string& path : JournalPair::Paths(spool_))
      std::filesystem::rename(path + ".crash", path);
    OpenStore();
    EXPECT_EQ(store_->stats().restored, 0u);
    EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
  }
};

TEST_F(RefusalRecordTest, WriteFailsAndACheckpointVoidsTheCreate) {
  OpenStore();
  int syncfs_before = env_.fs_syncs.load();
  // The batch's journal commit is the next journal write, the removal
  // record's the one after it.
  env_.fail_journal_writes_from = env_.journal_write_calls.load() + 2;
  env_.fail_journal_writes_through = env_.fail_journal_writes_from.load();
  ASSERT_NO_FATAL_FAILURE(RefuseThenCrashAndReopen());
  EXPECT_GE(env_.fs_syncs.load() - syncfs_before, 1);
}

// Its fdatasync fails; the syncfs after it reports that error again, and is
// called once more.
TEST_F(RefusalRecordTest, SyncFailsAndACheckpointVoidsTheCreate) {
  OpenStore();
  env_.fail_data_sync_number = env_.data_syncs.load() + 2;
  ASSERT_NO_FATAL_FAILURE(RefuseThenCrashAndReopen());
}

// A create whose journal write and then syncfs failed was renamed into
// queue/ already; its file goes before the syncfs that then voids its
// record (the failed journal write leaves no room for a removal record), or
// that syncfs would make a refused message a durable job.
TEST_F(JournaledSpoolTest, RefusedFileIsGoneBeforeTheSyncThatVoidsItsCreate) {
  OpenStore();
  int syncfs_before = env_.fs_syncs.load();
  env_.watch_queue_dir = spool_ + "/queue";
  env_.fail_journal_writes_from = env_.journal_write_calls.load() + 1;
  env_.fail_journal_writes_through = env_.fail_journal_writes_from.load();
  env_.syncfs_failures_left = 1;
  auto failed = CreateOne("Subject: refused\r\n\r\nbody\r\n");
  ASSERT_FALSE(failed.ok());
  // The batch's syncfs that failed, then the one voiding the record.
  EXPECT_GE(env_.fs_syncs.load() - syncfs_before, 2);
  EXPECT_EQ(env_.synced_with_a_queue_file.load(), 0);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
  env_.watch_queue_dir.clear();
  Reopen();
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
}

TEST_F(JournaledSpoolTest, AcknowledgedFileLostInACrashIsRestoredAtOpen) {
  auto made = CreateAndClose("Subject: kept\r\n\r\nbody\r\n");
  // What a power cut can do to a file whose bytes were only in the journal.
  ASSERT_TRUE(std::filesystem::remove(made.path));
  OpenStore();
  EXPECT_EQ(store_->stats().restored, 1u);
  auto file = ReadQueueFile(made.path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->envelope.qid(), made.qid);
  // Restored once: the open after it finds nothing left to do.
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
}

TEST_F(JournaledSpoolTest, TornOrStaleFileIsRewrittenFromTheJournal) {
  OpenStore();
  auto older = CreateOne("older\r\n");
  auto torn = CreateOne(std::string(20000, 't'));
  auto stale = CreateOne("stale\r\n");
  ASSERT_TRUE(older.ok() && torn.ok() && stale.ok());
  store_.reset();
  std::filesystem::resize_file(torn->path, 7000);
  // A reused spare whose rewrite did not reach the disk: the older job's
  // bytes under the new name.
  std::filesystem::copy_file(older->path, stale->path,
                             std::filesystem::copy_options::overwrite_existing);
  OpenStore();
  EXPECT_EQ(store_->stats().restored, 2u);
  for (const auto* made : {&*older, &*torn, &*stale}) {
    auto file = ReadQueueFile(made->path);
    ASSERT_TRUE(file.ok()) << file.status().message();
    EXPECT_EQ(file->envelope.qid(), made->qid);
  }
}

TEST_F(JournaledSpoolTest, RemovedJobIsNotBroughtBack) {
  OpenStore();
  auto gone = CreateOne("delivered\r\n");
  ASSERT_TRUE(gone.ok());
  std::string saved = gone->path + ".saved";
  std::filesystem::copy_file(gone->path, saved);
  ASSERT_TRUE(RemoveOne(gone->qid).ok());
  auto later = CreateOne("later\r\n");  // its commit carries the removal
  ASSERT_TRUE(later.ok());
  store_.reset();
  // The crash lost the removal (the file is back in queue/).
  std::filesystem::rename(saved, gone->path);
  OpenStore();
  EXPECT_EQ(store_->stats().re_removed, 1u);
  EXPECT_EQ(store_->stats().restored, 0u);
  EXPECT_FALSE(std::filesystem::exists(gone->path));
  EXPECT_TRUE(ReadQueueFile(later->path).ok());
}

TEST_F(JournaledSpoolTest, StateAppendedAfterTheCreateIsKept) {
  OpenStore();
  auto made = CreateOne("x\r\n");
  ASSERT_TRUE(made.ok());
  ASSERT_TRUE(AppendOne(made->qid, 4).ok());
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
  auto file = ReadQueueFile(made->path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->state.attempts(), 4u);
}

// A reused spare whose cut to the new length did not reach the disk: the
// older job's state records follow the new bytes and would read as this
// job's. Recovery makes the file exactly what the journal holds.
TEST_F(JournaledSpoolTest, StaleStateRecordsAfterTheNewBytesAreCutOff) {
  auto made = CreateAndClose("x\r\n");
  spool::JobState old_state;
  old_state.set_sequence(7);
  old_state.set_attempts(9);
  {
    std::ofstream f(made.path, std::ios::app | std::ios::binary);
    f << EncodeStateRecord(old_state);
  }
  ASSERT_TRUE(ReadQueueFile(made.path).ok());  // it would pass as valid
  OpenStore();
  EXPECT_EQ(store_->stats().restored, 1u);
  auto file = ReadQueueFile(made.path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->state.attempts(), 0u);
}

TEST_F(JournaledSpoolTest, JournalTurnedOffAfterACrashIsStillRead) {
  auto made = CreateAndClose("x\r\n");
  ASSERT_TRUE(std::filesystem::remove(made.path));
  journal_bytes_ = 0;
  OpenStore();
  EXPECT_EQ(store_->stats().restored, 1u);
  EXPECT_TRUE(ReadQueueFile(made.path).ok());
  EXPECT_FALSE(std::filesystem::exists(spool_ + "/journal"));
  // Had that removal been lost, the empty file left holds nothing to redo.
  EXPECT_GE(env_.dir_syncs.load(), 1);  // Discard's fsync of the journal
}

// A spilled body is never journaled (the journal copies bytes it holds in
// memory): its create is made durable by a syncfs and a checkpoint, so a
// crash cannot leave it to a journal that lacks its bytes.
TEST_F(JournaledSpoolTest, SpilledBodyGoesThroughSyncfs) {
  OpenStore();
  GroupCommitStats before = store_->stats();
  auto spill = std::make_shared<BodySpill>();
  ASSERT_TRUE(AppendSpillOne(spill, std::string(400000, 's')).ok());
  auto got = CreateFromSpillOne(std::move(spill));
  ASSERT_TRUE(got.ok()) << got.status().message();
  GroupCommitStats after = store_->stats();
  EXPECT_EQ(after.journal_syncs, before.journal_syncs);
  EXPECT_EQ(after.fs_syncs, before.fs_syncs + 1);
  EXPECT_EQ(after.checkpoints, before.checkpoints + 1);
  // Reopened as after a crash: the file is what was acknowledged.
  std::string path = got->path;
  store_.reset();
  OpenStore();
  auto file = ReadQueueFile(path);
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->envelope.body_size(), 400000u);
}

TEST_F(JournaledSpoolTest, LargeMessageAndFullJournalGoThroughSyncfs) {
  OpenStore();
  auto large = CreateOne(std::string(300 * 1024, 'L'));
  ASSERT_TRUE(large.ok());
  EXPECT_EQ(store_->stats().fs_syncs, 1u);
  EXPECT_EQ(store_->stats().journal_syncs, 0u);
  uint64_t checkpoints = store_->stats().checkpoints;  // one per syncfs
  EXPECT_EQ(checkpoints, 1u);
  // 2 MiB of journal: 5 KB creates one by one (8 KiB each) fill it and
  // force checkpoints; every file stays valid and nothing needs restoring.
  std::vector<SpoolStore::Created> made;
  ASSERT_NO_FATAL_FAILURE(CreateMany(400, &made));
  EXPECT_GT(store_->stats().checkpoints, checkpoints);
  ReopenAndExpectIntact(made);
}

// When a journal file fills, its checkpoint (a syncfs) runs on a side thread
// while the other file takes the commits: messages are acknowledged while
// that syncfs has not returned.
TEST_F(JournaledSpoolTest, FullJournalIsCheckpointedBesideTheCommits) {
  OpenStore();
  env_.hold_syncfs = true;
  std::vector<SpoolStore::Created> made;
  ASSERT_NO_FATAL_FAILURE(FillUntilACheckpointBegins(&made));
  ASSERT_NO_FATAL_FAILURE(CreateMany(20, &made));  // the syncfs still held
  EXPECT_EQ(store_->stats().side_checkpoints, 0u);
  env_.syncfs_released = true;
  RunUntil([&] { return store_->stats().side_checkpoints == 1; });
  EXPECT_EQ(store_->stats().checkpoint_waits, 0u);
  EXPECT_EQ(store_->stats().fs_syncs, 1u);
  EXPECT_EQ(store_->stats().journal_syncs, made.size());
  env_.hold_syncfs = false;
  ReopenAndExpectIntact(made);
}

// A crash before the full journal's checkpoint finished (here: its syncfs
// failed): both files hold records, and the open reads both. A job created
// in the first and removed in the second stays removed; every other one
// that the crash lost is restored.
TEST_F(JournaledSpoolTest, CrashDuringACheckpointReadsBothJournals) {
  OpenStore();
  env_.hold_syncfs = true;
  env_.fail_held_syncfs = true;
  std::vector<SpoolStore::Created> first, second;
  ASSERT_NO_FATAL_FAILURE(FillUntilACheckpointBegins(&first));
  ASSERT_GE(first.size(), 2u);
  // The last create went into the second file; the ones before are in the
  // first only.
  SpoolStore::Created gone = first.front();
  std::string saved = gone.path + ".saved";
  std::filesystem::copy_file(gone.path, saved);
  ASSERT_TRUE(RemoveOne(gone.qid).ok());
  ASSERT_NO_FATAL_FAILURE(CreateMany(5, &second));
  env_.syncfs_released = true;  // and it fails, as does the one at stop
  store_.reset();
  // The power cut: nothing written since the open reached the disk but the
  // journals; the removal was lost too.
  for (const auto* batch : {&first, &second}) {
    for (const auto& m : *batch) std::filesystem::remove(m.path);
  }
  std::filesystem::rename(saved, gone.path);
  env_.hold_syncfs = false;
  env_.fail_held_syncfs = false;
  OpenStore();
  EXPECT_EQ(store_->stats().re_removed, 1u);
  EXPECT_EQ(store_->stats().restored, first.size() - 1 + second.size());
  EXPECT_FALSE(std::filesystem::exists(gone.path));
  for (size_t i = 1; i < first.size(); ++i)
    ASSERT_TRUE(ReadQueueFile(first[i].path).ok()) << i;
  for (const auto& m : second) ASSERT_TRUE(ReadQueueFile(m.path).ok());
}

// The full journal's checkpoint failed, and so does its next one, after a
// syncfs that succeeded (here: its write fails). The current journal is then
// not checkpointed either: its removal records undo creates the older one
// still holds, and a crash must not deliver those jobs twice.
TEST_F(JournaledSpoolTest, RemovalsOutliveTheCreatesTheyUndo) {
  OpenStore();
  env_.hold_syncfs = true;
  env_.fail_held_syncfs = true;
  std::vector<SpoolStore::Created> first;
  ASSERT_NO_FATAL_FAILURE(FillUntilACheckpointBegins(&first));
  ASSERT_GE(first.size(), 3u);
  SpoolStore::Created gone = first.front();
  std::string saved = gone.path + ".saved";
  std::filesystem::copy_file(gone.path, saved);
  ASSERT_TRUE(RemoveOne(gone.qid).ok());  // recorded in the second journal
  env_.syncfs_released = true;
  RunUntil([&] { return env_.held_syncfs_done.load() == 1; });
  env_.hold_syncfs = false;
  env_.fail_journal_writes_to = spool_ + "/journal";  // the first, full one
  // A state record takes a syncfs (it succeeds) and then the checkpoints.
  EXPECT_FALSE(AppendOne(first[1].qid, 3).ok());
  store_.reset();  // the stop's checkpoint fails the same way
  env_.fail_journal_writes_to.clear();
  std::filesystem::rename(saved, gone.path);  // the crash lost the removal
  OpenStore();
  EXPECT_EQ(store_->stats().re_removed, 1u);
  EXPECT_FALSE(std::filesystem::exists(gone.path));
}

// After a failed syncfs the kernel may have dropped a file's bytes while
// keeping them as clean cached pages, so a later syncfs that succeeds has
// not made that file durable. Modelled here by zeroing an acknowledged
// file's bytes after the failed sync: whatever syncfs comes next, the files
// the journal covers are written again from it before it is checkpointed.
void Zero(const std::string& path) {
  auto size = std::filesystem::file_size(path);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.write(std::string(size, '\0').data(), static_cast<std::streamsize>(size));
}

TEST_F(JournaledSpoolTest, FilesAreWrittenAgainAfterAFailedSyncfs) {
  OpenStore();
  std::vector<SpoolStore::Created> made;
  ASSERT_NO_FATAL_FAILURE(CreateMany(3, &made));
  env_.fail_sync = true;  // a state record's syncfs fails
  EXPECT_FALSE(AppendOne(made[0].qid, 2).ok());
  env_.fail_sync = false;
  Zero(made[1].path);  // what that failed write-back lost
  int syncfs_before = env_.fs_syncs.load();
  ASSERT_TRUE(AppendOne(made[2].qid, 3).ok());  // a syncfs that succeeds
  // One syncfs, the files written again, a second syncfs, the checkpoint.
  EXPECT_EQ(env_.fs_syncs.load() - syncfs_before, 2);
  for (const auto& m : made) ASSERT_TRUE(ReadQueueFile(m.path).ok()) << m.qid;
  auto file = ReadQueueFile(made[2].path);
  EXPECT_EQ(file->state.attempts(), 3u);  // the appended state stays
  ReopenAndExpectIntact(made);
}

// The same when the failed syncfs was a full journal's side checkpoint and
// the next one is a state record's.
TEST_F(JournaledSpoolTest, FailedSideCheckpointIsNotFollowedByALoss) {
  OpenStore();
  env_.hold_syncfs = true;
  env_.fail_held_syncfs = true;
  std::vector<SpoolStore::Created> made;
  ASSERT_NO_FATAL_FAILURE(FillUntilACheckpointBegins(&made));
  env_.syncfs_released = true;
  RunUntil([&] { return env_.held_syncfs_done.load() == 1; });
  env_.hold_syncfs = false;
  env_.fail_held_syncfs = false;
  Zero(made[1].path);
  ASSERT_TRUE(AppendOne(made[0].qid, 2).ok());
  for (const auto& m : made) ASSERT_TRUE(ReadQueueFile(m.path).ok()) << m.qid;
  ReopenAndExpectIntact(made);
}

// And a full journal is not checkpointed beside the commits after a failed
// syncfs: its batch goes through a syncfs that writes the files again first.
TEST_F(JournaledSpoolTest, NoSideCheckpointAfterAFailedSyncfs) {
  OpenStore();
  std::vector<SpoolStore::Created> made;
  ASSERT_NO_FATAL_FAILURE(CreateMany(3, &made));
  env_.fail_sync = true;
  EXPECT_FALSE(AppendOne(made[0].qid, 2).ok());
  env_.fail_sync = false;
  Zero(made[1].path);
  ASSERT_NO_FATAL_FAILURE(FillUntilACheckpointBegins(&made));
  EXPECT_EQ(store_->stats().side_checkpoints, 0u);
  for (const auto& m : made) ASSERT_TRUE(ReadQueueFile(m.path).ok()) << m.qid;
  ReopenAndExpectIntact(made);
}

// The first checkpoint fills each journal file with zeros to its size (so
// no commit extends it); on a disk too full for that the store opens anyway
// and its journal grows as it fills.
TEST_F(JournaledSpoolTest, JournalTooLargeForTheDiskStillOpensAndWorks) {
  journal_bytes_ = 8 << 20;
  OpenStore();
  EXPECT_EQ(std::filesystem::file_size(spool_ + "/journal"), 4u << 20);
  EXPECT_EQ(std::filesystem::file_size(spool_ + "/journal.1"), 4u << 20);
  store_.reset();
  std::filesystem::remove(spool_ + "/journal");
  std::filesystem::remove(spool_ + "/journal.1");
  env_.no_space_past = 1 << 20;  // room for one growth step, not four
  OpenStore();
  EXPECT_EQ(std::filesystem::file_size(spool_ + "/journal"), 1u << 20);
  auto made = CreateOne("Subject: small\r\n\r\nbody\r\n");
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_EQ(store_->stats().journal_syncs, 1u);
  EXPECT_EQ(store_->stats().fs_syncs, 0u);
  env_.no_space_past = 0;
}

TEST_F(JournaledSpoolTest, FailedJournalSyncFallsBackAndLosesNothing) {
  OpenStore();
  env_.fail_sync = true;  // the journal's fdatasync and the syncfs both fail
  auto failed = CreateOne("x\r\n");
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(CountFiles(spool_ + "/queue") + CountFiles(spool_ + "/tmp"), 0);
  env_.fail_sync = false;
  auto made = CreateOne("y\r\n");
  ASSERT_TRUE(made.ok()) << made.status().message();
  EXPECT_TRUE(ReadQueueFile(made->path).ok());
  // The sync after a failed one is a syncfs and a checkpoint (the journal
  // may have a hole where the failed sync was), then the journal again.
  EXPECT_GE(store_->stats().checkpoints, 1u);
  auto later = CreateOne("z\r\n");
  ASSERT_TRUE(later.ok());
  EXPECT_GE(store_->stats().journal_syncs, 2u);
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 2);
}

// The refused create's record reached the journal before its sync failed;
// a clean stop writes its removal record, so the next open does not bring
// back a message whose client was told to try again.
TEST_F(JournaledSpoolTest, CreateRefusedByAFailedSyncIsNotRestored) {
  OpenStore();
  env_.fail_sync = true;
  auto failed = CreateOne("Subject: refused\r\n\r\nbody\r\n");
  ASSERT_FALSE(failed.ok());
  env_.fail_sync = false;
  Reopen();
  EXPECT_EQ(store_->stats().restored, 0u);
  EXPECT_EQ(CountFiles(spool_ + "/queue"), 0);
}

}  // namespace
}  // namespace mailfarm::scheduler
