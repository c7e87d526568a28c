// retry_policy.cc: exponential backoff with jitter and a maximum lifetime.
#include "scheduler/retry_policy.h"

#include <algorithm>

namespace mailfarm::scheduler {

RetryDecision NextRetry(const RetryPolicy& policy, uint32_t attempts,
                        int64_t arrival_ms, int64_t now_ms, double unit) {
  RetryDecision decision;
  int64_t expiry = arrival_ms + policy.max_lifetime_ms;
  if (now_ms >= expiry) {
    decision.expire = true;
    return decision;
  }
  int64_t step = policy.min_backoff_ms;
  for (uint32_t i = 1; i < attempts && step < policy.max_backoff_ms; ++i)
    step *= 2;
  step = std::min(step, policy.max_backoff_ms);
  double jittered = static_cast<double>(step) *
                    (1.0 - policy.jitter * std::clamp(unit, 0.0, 1.0));
  int64_t delay =
      std::max(policy.min_backoff_ms, static_cast<int64_t>(jittered));
  decision.next_attempt_ms = std::min(now_ms + delay, expiry);
  return decision;
}

}  // namespace mailfarm::scheduler
