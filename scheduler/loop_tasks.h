// loop_tasks.h: hands closures from worker threads to the scheduler's libevent
// loop (an eventfd wakes the loop), so I/O completions run on the loop thread
// and the loop itself never waits on a worker.
#ifndef MAILFARM_SCHEDULER_LOOP_TASKS_H_
#define MAILFARM_SCHEDULER_LOOP_TASKS_H_

#include <event2/event.h>

#include <deque>
#include <functional>
#include <memory>
#include <mutex>

#include "farm/status.h"
#include "farm/unique_fd.h"

namespace mailfarm::scheduler {

// Post() is thread-safe; tasks run on the loop thread in the order posted.
// Must be destroyed on the loop thread, after every thread that posts is
// joined.
class LoopTasks {
 public:
  static farm::StatusOr<std::unique_ptr<LoopTasks>> Create(event_base* base);
  ~LoopTasks();
  LoopTasks(const LoopTasks&) = delete;
  LoopTasks& operator=(const LoopTasks&) = delete;

  void Post(std::function<void()> task);
  // Runs every task posted so far (the loop calls this; so does shutdown).
  void RunPending();

 private:
  LoopTasks(farm::UniqueFd efd, event* ev) : efd_(std::move(efd)), event_(ev) {}
  static void OnWake(evutil_socket_t fd, short, void* arg);

  farm::UniqueFd efd_;
  event* event_;
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_LOOP_TASKS_H_
