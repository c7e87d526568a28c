// clock.h: the time source behind one small interface, so tests move time
// forward without sleeping (LevelDB's Env idea). Used by the scheduler's retry
// and rate logic and by the farm's pool policy.
#ifndef MAILFARM_FARM_CLOCK_H_
#define MAILFARM_FARM_CLOCK_H_

#include <cstdint>

namespace farm {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (wall clock, for on-disk times).
  virtual int64_t NowUnixMs() const = 0;
  // Milliseconds on a monotonic clock (for timeouts and rates).
  virtual int64_t MonotonicMs() const = 0;
};

// The real clocks. Thread-safe. The returned object lives forever.
Clock* RealClock();

// A clock that moves only when told. Not thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_unix_ms = 1'700'000'000'000)
      : now_(start_unix_ms) {}
  int64_t NowUnixMs() const override { return now_; }
  int64_t MonotonicMs() const override { return now_; }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  int64_t now_;
};

}  // namespace farm

#endif  // MAILFARM_FARM_CLOCK_H_
