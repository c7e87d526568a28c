// retry_policy.h: when a deferred job is tried again, and when it has waited
// long enough to bounce. A pure function of the attempt count and the times,
// so it is tested with a fake clock and no sleeping. Used by the queue.
#ifndef MAILFARM_SCHEDULER_RETRY_POLICY_H_
#define MAILFARM_SCHEDULER_RETRY_POLICY_H_

#include <cstdint>

namespace mailfarm::scheduler {

struct RetryPolicy {
  int64_t min_backoff_ms = 300'000;
  int64_t max_backoff_ms = 4'000'000;
  int64_t max_lifetime_ms = 432'000'000;
  // The delay is base * (1 - jitter * u) for u in [0, 1): up to this fraction
  // earlier than the plain exponential step, never below min_backoff_ms.
  double jitter = 0.25;
};

struct RetryDecision {
  bool expire = false;          // bounce what is left: the job is too old
  int64_t next_attempt_ms = 0;  // when !expire: wall-clock time of the next try
};

// `attempts` is how many attempts have failed so far (>= 1); `unit` is a
// uniform random number in [0, 1) (tests pass fixed values).
// The step is min_backoff * 2^(attempts-1), capped at max_backoff, jittered;
// the next attempt never lies past the job's expiry (one last try happens at
// arrival + max_lifetime). A failure at or past expiry expires the job.
RetryDecision NextRetry(const RetryPolicy& policy, uint32_t attempts,
                        int64_t arrival_ms, int64_t now_ms, double unit);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_RETRY_POLICY_H_
