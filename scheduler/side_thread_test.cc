// side_thread_test.cc: a task runs beside the caller and hands back its
// Status; Running says whether Wait would block; one started before
// destruction still runs.
#include "scheduler/side_thread.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace mailfarm::scheduler {
namespace {

TEST(SideThreadTest, RunsBesideTheCallerAndReturnsTheStatus) {
  SideThread side;
  std::atomic<bool> caller_done{false};
  std::atomic<bool> task_saw_caller{false};
  side.Start([&] {
    // Waits for the caller: only possible if the task runs on its own thread.
    for (int i = 0; i < 5000 && !caller_done; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    task_saw_caller = caller_done.load();
    return farm::Status::TempFail("disk busy");
  });
  caller_done = true;
  farm::Status status = side.Wait();
  EXPECT_TRUE(task_saw_caller);
  EXPECT_EQ(status.code(), farm::Status::Code::kTempFail);
  EXPECT_EQ(status.message(), "disk busy");
  side.Start([] { return farm::Status::Ok(); });
  EXPECT_TRUE(side.Wait().ok());
}

TEST(SideThreadTest, RunningUntilTheTaskReturns) {
  SideThread side;
  EXPECT_FALSE(side.Running());
  std::atomic<bool> finish{false};
  side.Start([&] {
    for (int i = 0; i < 5000 && !finish; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return farm::Status::Ok();
  });
  EXPECT_TRUE(side.Running());
  finish = true;
  for (int i = 0; i < 5000 && side.Running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_FALSE(side.Running());  // returned, not yet waited for
  EXPECT_TRUE(side.Wait().ok());
  EXPECT_FALSE(side.Running());
}

TEST(SideThreadTest, TaskStartedBeforeDestructionRuns) {
  std::atomic<bool> ran{false};
  {
    SideThread side;
    side.Start([&] {
      ran = true;
      return farm::Status::Ok();
    });
  }
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace mailfarm::scheduler
