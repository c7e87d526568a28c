// scoreboard.h: the single truth about a farm's children, in a shared-memory
// file (run/<farm>.scoreboard). The manager creates it; children update their
// own slot; mailfarmctl and the scheduler's metrics map it read-only.
#ifndef MAILFARM_FARM_SCOREBOARD_H_
#define MAILFARM_FARM_SCOREBOARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "farm/status.h"

namespace farm {

enum class SlotState : uint32_t {
  kFree = 0,  // no child
  kStarting =
      1,      // forked, not yet accepting (counts as idle for the pool rule)
  kIdle = 2,  // waiting in accept()
  kConnected =
      3,  // holds a persistent connection, between jobs (Apache's keepalive)
  kBusy = 4,     // working on a job or session
  kExiting = 5,  // leaving (recycled, old generation, stopping)
};
const char* SlotStateName(SlotState state);

// Lock-free fields only: processes read and write them without a mutex.
struct ScoreboardSlot {
  std::atomic<int32_t> pid;
  std::atomic<uint32_t> state;
  std::atomic<uint64_t> generation;
  std::atomic<uint64_t> jobs_done;
  std::atomic<int64_t> job_started_ms;  // monotonic ms; 0 when not busy
  std::atomic<int64_t> child_started_unix_ms;
  std::atomic<uint32_t> exit_requested;  // set by the manager: leave when idle
};

struct ScoreboardHeader {
  char magic[8];  // "MFSCORE1"
  uint32_t slot_count;
  int32_t manager_pid;
  char farm[48];
  std::atomic<uint64_t> generation;  // bumped by the manager on SIGHUP
  std::atomic<uint32_t> stopping;    // set by the manager on SIGTERM
  std::atomic<uint64_t>
      total_jobs;  // all jobs served since the manager started
  std::atomic<uint64_t> total_children;  // children ever forked
};

// Thread-compatible; the mapping is MAP_SHARED so forked children share it.
class Scoreboard {
 public:
  ~Scoreboard();
  Scoreboard(const Scoreboard&) = delete;
  Scoreboard& operator=(const Scoreboard&) = delete;

  // Creates (or truncates) the file with `slots` free slots, mode 0644.
  static StatusOr<std::unique_ptr<Scoreboard>> Create(const std::string& path,
                                                      const std::string& farm,
                                                      int slots);
  // Maps an existing scoreboard read-only (for mailfarmctl and metrics).
  static StatusOr<std::unique_ptr<Scoreboard>> OpenReadOnly(
      const std::string& path);

  ScoreboardHeader& header() { return *header_; }
  const ScoreboardHeader& header() const { return *header_; }
  int slot_count() const { return static_cast<int>(header_->slot_count); }
  ScoreboardSlot& slot(int i) { return slots_[i]; }
  const ScoreboardSlot& slot(int i) const { return slots_[i]; }

 private:
  Scoreboard(void* base, size_t size);
  void* base_;
  size_t size_;
  ScoreboardHeader* header_;
  ScoreboardSlot* slots_;
};

// Paths of every run_dir/*.scoreboard, sorted (mailfarmctl farms, metrics).
std::vector<std::string> ListScoreboards(const std::string& run_dir);

// A farm's children counted by state, from one read of its scoreboard.
struct ScoreboardCounts {
  std::string farm;
  int manager_pid = 0;
  uint64_t generation = 0;
  uint64_t total_jobs = 0;
  uint64_t total_children = 0;
  int by_state[6] = {0};  // indexed by SlotState
  int of(SlotState state) const { return by_state[static_cast<int>(state)]; }
};
ScoreboardCounts CountScoreboard(const Scoreboard& board);

}  // namespace farm

#endif  // MAILFARM_FARM_SCOREBOARD_H_
