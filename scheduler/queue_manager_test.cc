// queue_manager_test.cc: the queue's retry timing and lifecycle driven by a
// farm::FakeClock and a fake dispatcher (no farms, no sleeping): a tempfail
// defers for exactly the backoff, routes are kept between attempts, the state
// record on disk matches, and expiry bounces with a DSN to the sender.
#include "scheduler/queue_manager.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "scheduler/queue_test_fixture.h"

namespace mailfarm::scheduler {
namespace {

using QueueManagerTest = QueueTest;

TEST_F(QueueManagerTest, TempfailDefersForTheBackoffThenRetries) {
  std::string qid = InjectOne("alice@example.com");
  ASSERT_EQ(dispatcher_.submitted.size(), 1u);
  EXPECT_EQ(dispatcher_.submitted[0].first, "router");
  Answer(OUTCOME_OK, /*with_route=*/true);
  ASSERT_EQ(dispatcher_.submitted.size(), 2u);
  EXPECT_EQ(dispatcher_.submitted[1].first, "transport-c");
  Answer(OUTCOME_TEMPFAIL);
  RunUntil([&] { return queue_->deferred() == 1; });
  EXPECT_EQ(queue_->active(), 0u);

  auto file = ReadQueueFile(store_->PathOf(qid));
  ASSERT_TRUE(file.ok()) << file.status().message();
  EXPECT_EQ(file->state.attempts(), 1u);
  EXPECT_EQ(file->state.next_attempt_unix_ms(), clock_.NowUnixMs() + 60'000);

  clock_.Advance(59'999);
  queue_->Tick();
  EXPECT_EQ(dispatcher_.submitted.size(), 2u);  // not yet
  clock_.Advance(1);
  EXPECT_EQ(queue_->Tick(), std::nullopt);
  // Routes are not kept while a job waits: the retry routes again.
  ASSERT_EQ(dispatcher_.submitted.size(), 3u);
  EXPECT_EQ(dispatcher_.submitted[2].first, "router");
  Answer(OUTCOME_OK, /*with_route=*/true);
  ASSERT_EQ(dispatcher_.submitted.size(), 4u);
  EXPECT_EQ(dispatcher_.submitted[3].first, "transport-c");
  Answer(OUTCOME_TEMPFAIL);
  RunUntil([&] { return queue_->deferred() == 1; });
  clock_.Advance(119'999);  // second step: 2 x 60 s
  queue_->Tick();
  EXPECT_EQ(dispatcher_.submitted.size(), 4u);
  clock_.Advance(1);
  queue_->Tick();
  ASSERT_EQ(dispatcher_.submitted.size(), 5u);
  Answer(OUTCOME_OK, true);
  Answer(OUTCOME_OK);
  RunUntil([&] { return queue_->size() == 0; });
  EXPECT_FALSE(std::filesystem::exists(store_->PathOf(qid)));
  EXPECT_EQ(queue_->counter("delivered"), 1u);
}

size_t SpareFiles(const std::string& spool) {
  size_t n = 0;
  for (auto& e : std::filesystem::directory_iterator(spool + "/spare"))
    n += e.is_regular_file();
  return n;
}

TEST_F(QueueManagerTest, DeliveredJobsFileIsKeptForReuse) {
  std::string qid = InjectOne("alice@example.com");
  Answer(OUTCOME_OK, /*with_route=*/true);
  Answer(OUTCOME_OK);
  RunUntil([&] { return queue_->size() == 0; });
  EXPECT_EQ(SpareFiles(root_ + "/spool"), 1u);
}

// A child abandoned mid-job (timed out: its connection closed, the process
// perhaps still running) may still read the file by its open descriptor, so
// the file must never be rewritten for another message.
TEST_F(QueueManagerTest, FileOfAJobWithAnAbandonedChildIsNotReused) {
  std::string qid = InjectOne("alice@example.com");
  Answer(OUTCOME_OK, /*with_route=*/true);
  auto [farm, item] = dispatcher_.submitted.back();
  ASSERT_EQ(farm, "transport-c");
  dispatcher_.Finish(farm, item);
  queue_->OnAbort(item, farm::Status::TempFail("transport-c child timed out"));
  ASSERT_EQ(dispatcher_.submitted.size(), 3u);  // requeued to another child
  Answer(OUTCOME_OK);
  RunUntil([&] { return queue_->size() == 0; });
  EXPECT_FALSE(std::filesystem::exists(store_->PathOf(qid)));
  EXPECT_EQ(SpareFiles(root_ + "/spool"), 0u);
}

TEST_F(QueueManagerTest, ExpiryBouncesToTheSender) {
  std::string qid = InjectOne("bob@example.com");
  Answer(OUTCOME_OK, true);
  Answer(OUTCOME_TEMPFAIL);
  RunUntil([&] { return queue_->deferred() == 1; });
  // Skip forward attempt by attempt until the lifetime is over.
  for (int i = 0; i < 40 && queue_->counter("expired") == 0; ++i) {
    clock_.Advance(240'000);
    size_t before = dispatcher_.submitted.size();
    queue_->Tick();
    if (dispatcher_.submitted.size() > before) {
      Answer(OUTCOME_OK, true);  // routed again
      Answer(OUTCOME_TEMPFAIL);
      RunUntil([&] {
        return queue_->deferred() == 1 || queue_->counter("expired") > 0;
      });
    }
  }
  ASSERT_EQ(queue_->counter("expired"), 1u);
  // The DSN is a new job for bob (routing first), the original goes away.
  RunUntil(
      [&] { return queue_->counter("dsn_sent") == 1 && queue_->size() == 1; });
  Job dsn;
  ASSERT_TRUE(queue_->BuildJob(dispatcher_.submitted.back().second, &dsn));
  EXPECT_EQ(dsn.sender(), "");
  EXPECT_EQ(dsn.recipients(0).address(), "bob@example.com");
  EXPECT_NE(dsn.qid(), qid);
  auto file = ReadQueueFile(dsn.message_path());
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(file->envelope.is_bounce());
}

TEST_F(QueueManagerTest, NullSenderPermfailGetsNoDsn) {
  InjectOne("");
  Answer(OUTCOME_OK, true);
  Answer(OUTCOME_PERMFAIL);
  RunUntil([&] { return queue_->size() == 0; });
  EXPECT_EQ(queue_->counter("dsn_sent"), 0u);
  EXPECT_EQ(queue_->counter("dsn_suppressed_null_sender"), 1u);
}

TEST_F(QueueManagerTest, HoldAndReleaseOfADeferredJob) {
  std::string qid = InjectOne("carol@example.com");
  Answer(OUTCOME_OK, true);
  Answer(OUTCOME_TEMPFAIL);
  RunUntil([&] { return queue_->deferred() == 1; });
  Selector sel;
  sel.add_qids(qid);
  EXPECT_EQ(queue_->Hold(sel), 1u);
  EXPECT_EQ(queue_->deferred(), 0u);
  clock_.Advance(10'000'000);
  size_t before = dispatcher_.submitted.size();
  queue_->Tick();
  EXPECT_EQ(dispatcher_.submitted.size(), before);  // held: never due
  RunUntil([&] {
    auto f = ReadQueueFile(store_->PathOf(qid));
    return f.ok() && f->state.held();
  });
  EXPECT_EQ(queue_->Release(sel), 1u);
  RunUntil([&] { return dispatcher_.submitted.size() == before + 1; });
  EXPECT_EQ(queue_->Flush(sel), 0u);  // active, nothing to flush
}

}  // namespace
}  // namespace mailfarm::scheduler
