// pool_policy.cc: Apache prefork's perform_idle_server_maintenance as a pure
// function, and the crash-loop throttle.
#include "farm/pool_policy.h"

#include <algorithm>

namespace farm {

PoolDecision DecidePool(const PoolCounts& counts, const PoolLimits& limits,
                        int spawn_rate) {
  PoolDecision decision;
  spawn_rate = std::clamp(spawn_rate, 1, kMaxSpawnRate);
  // A starting child will be idle in a moment: counting it avoids over-forking.
  int spare = counts.idle + counts.starting;
  if (counts.idle > limits.max_spare) {
    // Shrink gently: one per tick, so a burst that ends does not kill the pool.
    decision.kill_idle = true;
    decision.next_spawn_rate = 1;
    return decision;
  }
  if (spare < limits.min_spare) {
    // Apache's rule: fork the whole rate, not just the shortfall, so a burst
    // of connections gets its children in a few seconds (1, 2, 4, 8 ...).
    // A tick that forked past the shortfall is trimmed later by max_spare.
    int room = std::max(0, limits.max_children - counts.total);
    decision.spawn = std::min(spawn_rate, room);
    // Apache's rule: while short, each tick forks twice as many as the last;
    // the rate falls back to 1 as soon as a tick finds enough spares.
    decision.next_spawn_rate =
        decision.spawn > 0 ? std::min(spawn_rate * 2, kMaxSpawnRate) : 1;
    return decision;
  }
  decision.next_spawn_rate = 1;
  return decision;
}

bool CrashThrottle::RecordExit(bool finished_a_job, int64_t now_ms) {
  if (finished_a_job) {
    early_deaths_ = 0;
    return false;
  }
  ++early_deaths_;
  if (early_deaths_ >= threshold_ && !Throttled(now_ms)) {
    throttled_until_ms_ = now_ms + pause_ms_;
    early_deaths_ = 0;
    return true;
  }
  return false;
}

}  // namespace farm
