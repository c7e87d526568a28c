// deferred_queue.h: jobs waiting for a time (deferred, or due later), ordered
// by that time. Add, remove and "what is due" are O(log n), so a million
// deferred jobs never make a scheduling decision scan the queue. Used by the
// queue manager on the loop thread.
#ifndef MAILFARM_SCHEDULER_DEFERRED_QUEUE_H_
#define MAILFARM_SCHEDULER_DEFERRED_QUEUE_H_

#include <cstdint>
#include <optional>
#include <set>
#include <utility>
#include <vector>

namespace mailfarm::scheduler {

// Not thread-safe. Entries are (due time, id): the caller keeps each job's due
// time (it has it anyway), so one ordered set is enough, about 48 bytes an
// entry, which the RSS benchmark counts.
class DeferredQueue {
 public:
  // REQUIRES: (id, due_ms) is not queued yet.
  void Add(uint64_t id, int64_t due_ms) { by_time_.emplace(due_ms, id); }
  // False when that entry was not queued (removing is then harmless).
  bool Remove(uint64_t id, int64_t due_ms) {
    return by_time_.erase({due_ms, id}) > 0;
  }
  bool Contains(uint64_t id, int64_t due_ms) const {
    return by_time_.count({due_ms, id}) > 0;
  }
  // Removes and returns up to `limit` ids due at or before now_ms, earliest
  // first.
  std::vector<uint64_t> PopDue(int64_t now_ms, size_t limit);
  // The earliest due time, if any.
  std::optional<int64_t> NextDue() const;
  size_t size() const { return by_time_.size(); }

 private:
  std::set<std::pair<int64_t, uint64_t>> by_time_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_DEFERRED_QUEUE_H_
