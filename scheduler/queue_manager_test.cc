// queue_manager_test.cc: the queue's retry timing and lifecycle driven by a
// farm::FakeClock and a fake dispatcher (no farms, no sleeping): a tempfail
// defers for exactly the backoff, routes are kept between attempts, the state
// record on disk matches, and expiry bounces with a DSN to the sender.
#include "scheduler/queue_manager.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace mailfarm::scheduler {
namespace {

class FakeDispatcher : public StageDispatcher {
 public:
  bool Submit(const std::string& farm, const WorkItem& item) override {
    submitted.emplace_back(farm, item);
    return farm == "router" || farm == "transport-c";
  }
  size_t Cancel(uint64_t) override { return 0; }
  std::vector<std::pair<std::string, WorkItem>> submitted;
};

class QueueManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/queue_manager_test.XXXXXX";
    root_ = ::mkdtemp(tmpl);
    base_ = event_base_new();
    tasks_ = std::move(*LoopTasks::Create(base_));
    FileSpoolStore::Options options;
    options.spool_dir = root_ + "/spool";
    options.io_threads = 1;
    options.clock = &clock_;
    store_ = std::move(*FileSpoolStore::Open(options, tasks_.get()));
    QueueSettings settings;
    settings.retry.min_backoff_ms = 60'000;
    settings.retry.max_backoff_ms = 240'000;
    settings.retry.max_lifetime_ms = 3'600'000;
    settings.retry.jitter = 0;
    settings.filter_enabled = false;
    settings.hostname = "mx.test";
    queue_ = std::make_unique<QueueManager>(store_.get(), &dispatcher_, &clock_,
                                            settings);
  }
  void TearDown() override {
    queue_.reset();
    store_.reset();
    tasks_.reset();
    event_base_free(base_);
    std::filesystem::remove_all(root_);
  }
  template <typename Pred>
  void RunUntil(Pred pred) {
    for (int i = 0; i < 20000 && !pred(); ++i) {
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      usleep(200);
    }
    ASSERT_TRUE(pred());
  }
  std::string InjectOne(const std::string& sender) {
    spool::Envelope e;
    e.set_sender(sender);
    e.set_arrival_unix_ms(clock_.NowUnixMs());
    auto* r = e.add_recipients();
    r->set_index(0);
    r->set_address("user@dest.example");
    std::string qid;
    queue_->Inject(e, "Subject: s\r\n\r\nbody\r\n",
                   [&](farm::StatusOr<std::string> q) {
                     ASSERT_TRUE(q.ok());
                     qid = *q;
                   });
    RunUntil([&] { return !qid.empty(); });
    return qid;
  }
  // Answers the last submitted item.
  void Answer(Outcome outcome, bool with_route = false) {
    ASSERT_FALSE(dispatcher_.submitted.empty());
    WorkItem item = dispatcher_.submitted.back().second;
    Job job;
    ASSERT_TRUE(queue_->BuildJob(item, &job));
    Result result;
    result.set_qid(job.qid());
    auto* rr = result.add_recipients();
    rr->set_index(job.recipients(0).index());
    rr->set_outcome(outcome);
    rr->set_dsn(outcome == OUTCOME_OK ? "2.0.0" : "4.4.1");
    rr->set_text("test");
    if (with_route) {
      auto* route = rr->add_routes();
      route->set_address(job.recipients(0).address());
      route->set_channel("c");
      route->set_nexthop("dest.example");
    }
    queue_->OnResult(item, result);
  }

  std::string root_;
  farm::FakeClock clock_;
  event_base* base_ = nullptr;
  std::unique_ptr<LoopTasks> tasks_;
  std::unique_ptr<FileSpoolStore> store_;
  FakeDispatcher dispatcher_;
  std::unique_ptr<QueueManager> queue_;
};

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
