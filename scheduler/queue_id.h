// queue_id.h: queue ids, unique across restarts and sorting by arrival:
// 12 hex digits of the arrival time in ms, then a 4-hex-digit counter within
// that millisecond ("0192a3b4c5d60001"). Used by the spool store and replay.
#ifndef MAILFARM_SCHEDULER_QUEUE_ID_H_
#define MAILFARM_SCHEDULER_QUEUE_ID_H_

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

namespace mailfarm::scheduler {

inline constexpr size_t kQueueIdLength = 16;

// Thread-safe. Ids are strictly increasing for one generator even if the wall
// clock steps back (the generator then keeps counting from its last id).
// Across restarts the spool store seeds it with the newest id in use (the
// journal's and queue/'s, see FileSpoolStore::Open).
class QueueIdGenerator {
 public:
  std::string Next(int64_t now_unix_ms);
  // Every later id is greater than `qid` (a valid one; others are ignored).
  void Seed(std::string_view qid);
  // The last id handed out or seeded; "" when none.
  std::string Last();

 private:
  std::mutex mu_;
  int64_t last_ms_ = 0;   // guarded by mu_
  uint32_t counter_ = 0;  // guarded by mu_
};

// 16 lowercase hex digits.
bool IsValidQueueId(std::string_view qid);

// The arrival time encoded in a valid qid.
int64_t QueueIdTimeMs(std::string_view qid);

// The spool/queue/ subdirectory of a qid: one hex digit, the one that changes
// every 65.5 s. Injections made at the same time land in the same directory,
// so one directory fsync covers a whole group commit; over minutes the queue
// still spreads over 16 directories.
char QueueIdHashDir(std::string_view qid);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_QUEUE_ID_H_
