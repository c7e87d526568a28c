// deferred_queue.cc: two ordered sets, one by due time and one by id.
#include "scheduler/deferred_queue.h"

namespace mailfarm::scheduler {

void DeferredQueue::Add(uint64_t id, int64_t due_ms) {
  Remove(id);
  by_time_.emplace(due_ms, id);
  by_id_.emplace(id, due_ms);
}

bool DeferredQueue::Remove(uint64_t id) {
  auto it = by_id_.lower_bound({id, INT64_MIN});
  if (it == by_id_.end() || it->first != id) return false;
  by_time_.erase({it->second, id});
  by_id_.erase(it);
  return true;
}

bool DeferredQueue::Contains(uint64_t id) const {
  auto it = by_id_.lower_bound({id, INT64_MIN});
  return it != by_id_.end() && it->first == id;
}

std::vector<uint64_t> DeferredQueue::PopDue(int64_t now_ms, size_t limit) {
  std::vector<uint64_t> due;
  while (!by_time_.empty() && due.size() < limit &&
         by_time_.begin()->first <= now_ms) {
    auto [when, id] = *by_time_.begin();
    by_time_.erase(by_time_.begin());
    by_id_.erase({id, when});
    due.push_back(id);
  }
  return due;
}

std::optional<int64_t> DeferredQueue::NextDue() const {
  if (by_time_.empty()) return std::nullopt;
  return by_time_.begin()->first;
}

}  // namespace mailfarm::scheduler
