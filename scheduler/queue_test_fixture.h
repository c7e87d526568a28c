// queue_test_fixture.h: a QueueManager under test, with a real FileSpoolStore
// in a temp dir, a farm::FakeClock (time moves only when a test says so) and
// a fake dispatcher that records the work submitted to each farm and keeps
// what is still outstanding. Shared by queue_manager_test.cc and
// destination_dispatch_test.cc.
#ifndef MAILFARM_SCHEDULER_QUEUE_TEST_FIXTURE_H_
#define MAILFARM_SCHEDULER_QUEUE_TEST_FIXTURE_H_

#include <event2/event.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "scheduler/queue_manager.h"

namespace mailfarm::scheduler {

// Knows the farms "router" and "transport-c"; each takes at most `room`
// outstanding items, as a FarmLink with that many connections would.
class FakeDispatcher : public StageDispatcher {
 public:
  bool Submit(const std::string& farm, const WorkItem& item) override {
    submitted.emplace_back(farm, item);
    if (!Known(farm)) return false;
    outstanding[farm].push_back(item);
    return true;
  }
  std::optional<size_t> Room(const std::string& farm) const override {
    if (!Known(farm)) return std::nullopt;
    auto it = outstanding.find(farm);
    size_t used = it == outstanding.end() ? 0 : it->second.size();
    return used < room ? room - used : 0;
  }
  std::vector<WorkItem> Cancel(uint64_t job_id) override {
    std::vector<WorkItem> dropped;
    for (auto& [farm, items] : outstanding) {
      std::erase_if(items, [&](const WorkItem& w) {
        if (w.job_id != job_id) return false;
        dropped.push_back(w);
        return true;
      });
    }
    return dropped;
  }
  // The item is answered (its child is free again).
  void Finish(const std::string& farm, const WorkItem& item) {
    std::erase_if(outstanding[farm], [&](const WorkItem& w) {
      return w.job_id == item.job_id && w.stage == item.stage &&
             w.group == item.group;
    });
  }
  static bool Known(const std::string& farm) {
    return farm == "router" || farm == "transport-c";
  }

  size_t room = 100;
  std::vector<std::pair<std::string, WorkItem>> submitted;
  std::map<std::string, std::vector<WorkItem>> outstanding;
};

class QueueTest : public ::testing::Test {
 protected:
  // Backoff 60 s doubling to 240 s, lifetime 1 h, no jitter, no filter.
  virtual QueueSettings Settings() {
    QueueSettings settings;
    settings.retry.min_backoff_ms = 60'000;
    settings.retry.max_backoff_ms = 240'000;
    settings.retry.max_lifetime_ms = 3'600'000;
    settings.retry.jitter = 0;
    settings.filter_enabled = false;
    settings.hostname = "mx.test";
    return settings;
  }
  void SetUp() override {
    char tmpl[] = "/tmp/queue_test.XXXXXX";
    root_ = ::mkdtemp(tmpl);
    base_ = event_base_new();
    tasks_ = std::move(*LoopTasks::Create(base_));
    FileSpoolStore::Options options;
    options.spool_dir = root_ + "/spool";
    options.io_threads = 1;
    options.clock = &clock_;
    store_ = std::move(*FileSpoolStore::Open(options, tasks_.get()));
    queue_ = std::make_unique<QueueManager>(store_.get(), &dispatcher_, &clock_,
                                            Settings());
  }
  void TearDown() override {
    queue_.reset();
    store_.reset();
    tasks_.reset();
    event_base_free(base_);
    std::filesystem::remove_all(root_);
  }
  // Runs the loop (the store's completions) until `pred` holds.
  template <typename Pred>
  void RunUntil(Pred pred) {
    for (int i = 0; i < 20000 && !pred(); ++i) {
      event_base_loop(base_, EVLOOP_ONCE | EVLOOP_NONBLOCK);
      usleep(200);
    }
    ASSERT_TRUE(pred());
  }
  std::string Inject(const std::string& sender, const std::string& rcpt) {
    spool::Envelope e;
    e.set_sender(sender);
    e.set_arrival_unix_ms(clock_.NowUnixMs());
    auto* r = e.add_recipients();
    r->set_index(0);
    r->set_address(rcpt);
    std::string qid;
    queue_->Inject(e, "Subject: s\r\n\r\nbody\r\n",
                   [&](farm::StatusOr<std::string> q) {
                     ASSERT_TRUE(q.ok());
                     qid = *q;
                   });
    RunUntil([&] { return !qid.empty(); });
    return qid;
  }
  std::string InjectOne(const std::string& sender) {
    return Inject(sender, "user@dest.example");
  }
  // Answers `item` of `farm` with `outcome` for its first recipient; a
  // routing answer routes it to channel c with `nexthop`.
  void AnswerItem(const std::string& farm, const WorkItem& item,
                  Outcome outcome, bool with_route = false,
                  const std::string& nexthop = "dest.example",
                  bool connection_failure = false) {
    Job job;
    ASSERT_TRUE(queue_->BuildJob(item, &job));
    dispatcher_.Finish(farm, item);
    Result result;
    result.set_qid(job.qid());
    auto* rr = result.add_recipients();
    rr->set_index(job.recipients(0).index());
    rr->set_outcome(outcome);
    rr->set_dsn(outcome == OUTCOME_OK ? "2.0.0" : "4.4.1");
    rr->set_text("test");
    result.set_connection_failure(connection_failure);
    if (with_route) {
      auto* route = rr->add_routes();
      route->set_address(job.recipients(0).address());
      route->set_channel("c");
      route->set_nexthop(nexthop);
    }
    queue_->OnResult(item, result);
  }
  // Answers the last submitted item.
  void Answer(Outcome outcome, bool with_route = false) {
    ASSERT_FALSE(dispatcher_.submitted.empty());
    auto [farm, item] = dispatcher_.submitted.back();
    AnswerItem(farm, item, outcome, with_route);
  }

  std::string root_;
  farm::FakeClock clock_;
  event_base* base_ = nullptr;
  std::unique_ptr<LoopTasks> tasks_;
  std::unique_ptr<FileSpoolStore> store_;
  FakeDispatcher dispatcher_;
  std::unique_ptr<QueueManager> queue_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_QUEUE_TEST_FIXTURE_H_
