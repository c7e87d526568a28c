// gcra.cc: GCRA arithmetic (see gcra.h).
#include "scheduler/gcra.h"

#include <algorithm>
#include <cmath>

namespace mailfarm::scheduler {

void Gcra::Configure(double rate_per_second, uint32_t burst) {
  if (!(rate_per_second > 0) || !std::isfinite(rate_per_second)) {
    interval_us_ = tolerance_us_ = 0;
    return;
  }
  interval_us_ = std::max<int64_t>(
      1, static_cast<int64_t>(std::llround(1e6 / rate_per_second)));
  tolerance_us_ = interval_us_ * (std::max<uint32_t>(burst, 1) - 1);
}

int64_t Gcra::WaitMs(int64_t now_ms) const {
  if (unlimited()) return 0;
  int64_t allowed_at_us = tat_us_ - tolerance_us_;
  int64_t now_us = now_ms * 1000;
  if (allowed_at_us <= now_us) return 0;
  return (allowed_at_us - now_us + 999) / 1000;  // round up: never early
}

void Gcra::Take(int64_t now_ms) {
  if (unlimited()) return;
  // A send less than one clock tick (1 ms) after its theoretical time is on
  // time: the caller's clock cannot do better, and restarting from now_ms
  // would lose up to 1 ms a message (3/s would come out as 2.99/s).
  int64_t now_us = now_ms * 1000;
  int64_t base = tat_us_ > now_us - 1000 ? tat_us_ : now_us;
  tat_us_ = base + interval_us_;
}

bool Gcra::Idle(int64_t now_ms) const {
  return unlimited() || tat_us_ <= now_ms * 1000;
}

}  // namespace mailfarm::scheduler
