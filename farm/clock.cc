// clock.cc: the real wall and monotonic clocks.
#include "farm/clock.h"

#include <time.h>

namespace farm {

namespace {

int64_t ReadClockMs(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

class SystemClock : public Clock {
 public:
  int64_t NowUnixMs() const override { return ReadClockMs(CLOCK_REALTIME); }
  int64_t MonotonicMs() const override { return ReadClockMs(CLOCK_MONOTONIC); }
};

}  // namespace

Clock* RealClock() {
  static SystemClock clock;  // trivially destructible state; safe at exit
  return &clock;
}

}  // namespace farm
