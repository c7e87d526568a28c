// loop_tasks.cc: an eventfd-backed task queue for the libevent loop.
#include "scheduler/loop_tasks.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

namespace mailfarm::scheduler {

farm::StatusOr<std::unique_ptr<LoopTasks>> LoopTasks::Create(event_base* base) {
  farm::UniqueFd efd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!efd) return farm::Status::FromErrno("eventfd", errno);
  int fd = efd.get();
  std::unique_ptr<LoopTasks> tasks(new LoopTasks(std::move(efd), nullptr));
  tasks->event_ = event_new(base, fd, EV_READ | EV_PERSIST, &LoopTasks::OnWake,
                            tasks.get());
  if (tasks->event_ == nullptr || event_add(tasks->event_, nullptr) != 0) {
    return farm::Status::Error("cannot register the loop task event");
  }
  return tasks;
}

LoopTasks::~LoopTasks() {
  if (event_ != nullptr) event_free(event_);
}

void LoopTasks::Post(std::function<void()> task) {
  bool was_empty;
  {
    std::lock_guard<std::mutex> lock(mu_);
    was_empty = tasks_.empty();
    tasks_.push_back(std::move(task));
  }
  if (was_empty) {
    uint64_t one = 1;
    // The counter cannot overflow in practice; a full counter still wakes the
    // loop.
    [[maybe_unused]] ssize_t n = ::write(efd_.get(), &one, sizeof one);
  }
}

void LoopTasks::RunPending() {
  std::deque<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(tasks_);
  }
  for (auto& task : batch) task();
}

void LoopTasks::OnWake(evutil_socket_t fd, short, void* arg) {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd, &count, sizeof count);
  static_cast<LoopTasks*>(arg)->RunPending();
}

}  // namespace mailfarm::scheduler
