// gcra.h: a rate limit as the Generic Cell Rate Algorithm (one "theoretical
// arrival time" per limit, no timers, no token refills). The destination
// table keeps one per destination and one per channel to answer "may this
// send now, and if not, when".
#ifndef MAILFARM_SCHEDULER_GCRA_H_
#define MAILFARM_SCHEDULER_GCRA_H_

#include <cstdint>

namespace mailfarm::scheduler {

// Not thread-safe. Times are monotonic milliseconds; the state is kept in
// microseconds so that rates like 3/s do not drift by rounding.
class Gcra {
 public:
  // Unlimited until configured.
  Gcra() = default;
  // rate_per_second <= 0 means unlimited. `burst` (>= 1) messages may go at
  // once; after that one every 1/rate seconds. Keeps the current debt.
  void Configure(double rate_per_second, uint32_t burst);
  bool unlimited() const { return interval_us_ == 0; }
  // 0 when a message may go at now_ms, else how many ms until one may.
  int64_t WaitMs(int64_t now_ms) const;
  // Records one message sent at now_ms (whether or not it conformed: a send
  // the caller could not hold back still uses up the rate).
  void Take(int64_t now_ms);
  // True when the limit has no debt left at now_ms (forgetting it changes
  // nothing).
  bool Idle(int64_t now_ms) const;
  // The first time Idle() holds (ms, rounded up).
  int64_t IdleAtMs() const { return (tat_us_ + 999) / 1000; }

 private:
  int64_t interval_us_ = 0;   // T: 1/rate
  int64_t tolerance_us_ = 0;  // tau: (burst - 1) * T
  int64_t tat_us_ = 0;        // theoretical arrival time of the next message
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_GCRA_H_
