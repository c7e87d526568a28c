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

// Not thread-safe. Ids are the caller's job handles; an id is in the queue at
// most once (Add on a queued id moves it).
class DeferredQueue {
 public:
  void Add(uint64_t id, int64_t due_ms);
  // False when the id was not queued.
  bool Remove(uint64_t id);
  bool Contains(uint64_t id) const;
  // Removes and returns up to `limit` ids due at or before now_ms, earliest
  // first.
  std::vector<uint64_t> PopDue(int64_t now_ms, size_t limit);
  // The earliest due time, if any.
  std::optional<int64_t> NextDue() const;
  size_t size() const { return by_time_.size(); }

 private:
  std::set<std::pair<int64_t, uint64_t>> by_time_;
  // id -> due time, to find an entry for Remove without a scan. A sorted
  // vector would be smaller, but ids arrive in no order; std::set costs about
  // 40 bytes an entry, which the RSS benchmark counts.
  std::set<std::pair<uint64_t, int64_t>> by_id_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_DEFERRED_QUEUE_H_
