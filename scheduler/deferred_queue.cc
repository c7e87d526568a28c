// deferred_queue.cc: one ordered set of (due time, id).
#include "scheduler/deferred_queue.h"

namespace mailfarm::scheduler {

std::vector<uint64_t> DeferredQueue::PopDue(int64_t now_ms, size_t limit) {
  std::vector<uint64_t> due;
  while (!by_time_.empty() && due.size() < limit &&
         by_time_.begin()->first <= now_ms) {
    due.push_back(by_time_.begin()->second);
    by_time_.erase(by_time_.begin());
  }
  return due;
}

std::optional<int64_t> DeferredQueue::NextDue() const {
  if (by_time_.empty()) return std::nullopt;
  return by_time_.begin()->first;
}

}  // namespace mailfarm::scheduler
