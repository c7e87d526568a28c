// side_thread.h: a thread that runs one task at a time beside its caller and
// hands back the task's Status. The spool's committer starts a batch's journal
// commit on it (an fdatasync, mostly waiting on the disk) and meanwhile writes
// the same batch's queue files (CPU in the kernel), so the two overlap.
#ifndef MAILFARM_SCHEDULER_SIDE_THREAD_H_
#define MAILFARM_SCHEDULER_SIDE_THREAD_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "farm/status.h"

namespace mailfarm::scheduler {

class SideThread {
 public:
  SideThread();
  ~SideThread();  // a started task runs to its end first
  SideThread(const SideThread&) = delete;
  SideThread& operator=(const SideThread&) = delete;

  // Runs `task` on the thread. One at a time: Wait for it before the next.
  void Start(std::function<farm::Status()> task);
  // Blocks until the started task has returned; its Status.
  farm::Status Wait();
  // Whether Wait would block: a task was started and has not returned.
  bool Running();

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<farm::Status()> task_;  // guarded by mu_
  std::optional<farm::Status> result_;  // guarded by mu_
  bool started_ = false;   // Start called, Wait not yet; guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;     // last: it starts once the members above exist
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SIDE_THREAD_H_
