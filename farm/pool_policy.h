// pool_policy.h: Apache prefork's spare-pool rule and Postfix master's crash
// throttle, as pure functions of counts and time. FarmManager calls them once a
// second; the unit tests call them without forking anything.
#ifndef MAILFARM_FARM_POOL_POLICY_H_
#define MAILFARM_FARM_POOL_POLICY_H_

#include <cstdint>

namespace farm {

struct PoolCounts {
  int idle = 0;  // waiting in accept()
  int starting =
      0;         // forked, not yet idle: counted as idle so we do not over-fork
  int busy = 0;  // busy or holding a connection
  int total = 0;  // every live child, including exiting ones
};

struct PoolLimits {
  int min_spare = 1;
  int max_spare = 4;
  int max_children = 32;
};

inline constexpr int kMaxSpawnRate = 32;

struct PoolDecision {
  int spawn = 0;            // children to fork now
  bool kill_idle = false;   // ask one idle child to exit
  int next_spawn_rate = 1;  // rate to pass in on the next tick
};

// One maintenance tick. `spawn_rate` is the previous decision's next_spawn_rate
// (start with 1): it doubles up to kMaxSpawnRate while spares are short and
// resets to 1 otherwise. Never exceeds max_children; kills at most one idle
// child.
PoolDecision DecidePool(const PoolCounts& counts, const PoolLimits& limits,
                        int spawn_rate);

// Respawn throttle for a crash loop: children that die before finishing their
// first job, `threshold` times in a row, pause spawning for `pause_ms`.
class CrashThrottle {
 public:
  CrashThrottle(int threshold, int64_t pause_ms)
      : threshold_(threshold), pause_ms_(pause_ms) {}

  // Records a child's exit. Returns true when this exit starts a throttle
  // period (the caller logs once).
  bool RecordExit(bool finished_a_job, int64_t now_ms);
  bool Throttled(int64_t now_ms) const { return now_ms < throttled_until_ms_; }
  int consecutive_early_deaths() const { return early_deaths_; }

 private:
  int threshold_;
  int64_t pause_ms_;
  int early_deaths_ = 0;
  int64_t throttled_until_ms_ = 0;
};

}  // namespace farm

#endif  // MAILFARM_FARM_POOL_POLICY_H_
