// side_thread.cc: the hand-over of one task and its result (see
// side_thread.h).
#include "scheduler/side_thread.h"

#include <utility>

namespace mailfarm::scheduler {

SideThread::SideThread() : thread_([this] { Loop(); }) {}

SideThread::~SideThread() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;  // a task started but not yet picked up still runs
  }
  cv_.notify_all();
  thread_.join();
}

void SideThread::Start(std::function<farm::Status()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_ = std::move(task);
    result_.reset();
    started_ = true;
  }
  cv_.notify_all();
}

farm::Status SideThread::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return result_.has_value(); });
  farm::Status result = std::move(*result_);
  result_.reset();
  started_ = false;
  return result;
}

bool SideThread::Running() {
  std::lock_guard<std::mutex> lock(mu_);
  return started_ && !result_.has_value();
}

void SideThread::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return task_ || stopping_; });
    if (!task_) return;  // stopping, nothing started
    std::function<farm::Status()> task;
    task.swap(task_);
    lock.unlock();
    farm::Status result = task();
    lock.lock();
    result_ = std::move(result);
    cv_.notify_all();
  }
}

}  // namespace mailfarm::scheduler
