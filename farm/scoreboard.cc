// scoreboard.cc: the mmap'd shared-memory scoreboard file.
#include "farm/scoreboard.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "farm/unique_fd.h"

namespace farm {

namespace {
constexpr char kMagic[8] = {'M', 'F', 'S', 'C', 'O', 'R', 'E', '1'};
static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "scoreboard needs lock-free atomics");
static_assert(std::atomic<int64_t>::is_always_lock_free,
              "scoreboard needs lock-free atomics");

size_t MappingSize(int slots) {
  return sizeof(ScoreboardHeader) +
         sizeof(ScoreboardSlot) * static_cast<size_t>(slots);
}
}  // namespace

const char* SlotStateName(SlotState state) {
  switch (state) {
    case SlotState::kFree:
      return "free";
    case SlotState::kStarting:
      return "starting";
    case SlotState::kIdle:
      return "idle";
    case SlotState::kConnected:
      return "connected";
    case SlotState::kBusy:
      return "busy";
    case SlotState::kExiting:
      return "exiting";
  }
  return "unknown";
}

Scoreboard::Scoreboard(void* base, size_t size)
    : base_(base),
      size_(size),
      header_(static_cast<ScoreboardHeader*>(base)),
      slots_(reinterpret_cast<ScoreboardSlot*>(static_cast<char*>(base) +
                                               sizeof(ScoreboardHeader))) {}

Scoreboard::~Scoreboard() { ::munmap(base_, size_); }

StatusOr<std::unique_ptr<Scoreboard>> Scoreboard::Create(
    const std::string& path, const std::string& farm, int slots) {
  // Build the file aside and rename it in place so a reader never maps a
  // half-made one.
  std::string tmp = path + ".new";
  UniqueFd fd(
      ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return Status::FromErrno("open " + tmp, errno);
  size_t size = MappingSize(slots);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return Status::FromErrno("ftruncate " + tmp, errno);
  }
  void* base =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return Status::FromErrno("mmap " + tmp, errno);
  std::unique_ptr<Scoreboard> board(new Scoreboard(base, size));
  std::memset(base, 0, size);  // zero is a valid state for every atomic field
  auto& header = board->header();
  std::memcpy(header.magic, kMagic, sizeof(kMagic));
  header.slot_count = static_cast<uint32_t>(slots);
  header.manager_pid = ::getpid();
  std::strncpy(header.farm, farm.c_str(), sizeof(header.farm) - 1);
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::FromErrno("rename " + path, errno);
  return board;
}

StatusOr<std::unique_ptr<Scoreboard>> Scoreboard::OpenReadOnly(
    const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Status::FromErrno("open " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return Status::FromErrno("fstat " + path, errno);
  size_t size = static_cast<size_t>(st.st_size);
  if (size < sizeof(ScoreboardHeader))
    return Status::Invalid(path + ": not a scoreboard");
  void* base = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return Status::FromErrno("mmap " + path, errno);
  std::unique_ptr<Scoreboard> board(new Scoreboard(base, size));
  const auto& header = board->header();
  if (std::memcmp(header.magic, kMagic, sizeof(kMagic)) != 0 ||
      MappingSize(static_cast<int>(header.slot_count)) > size) {
    return Status::Invalid(path + ": not a scoreboard (bad magic or size)");
  }
  return board;
}

std::vector<std::string> ListScoreboards(const std::string& run_dir) {
  std::vector<std::string> paths;
  DIR* dir = ::opendir(run_dir.c_str());
  if (dir == nullptr) return paths;
  const std::string suffix = ".scoreboard";
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      paths.push_back(run_dir + "/" + name);
    }
  }
  ::closedir(dir);
  std::sort(paths.begin(), paths.end());
  return paths;
}

ScoreboardCounts CountScoreboard(const Scoreboard& board) {
  const ScoreboardHeader& header = board.header();
  ScoreboardCounts counts;
  counts.farm.assign(header.farm, strnlen(header.farm, sizeof(header.farm)));
  counts.manager_pid = header.manager_pid;
  counts.generation = header.generation.load();
  counts.total_jobs = header.total_jobs.load();
  counts.total_children = header.total_children.load();
  for (int i = 0; i < board.slot_count(); ++i) {
    uint32_t state = board.slot(i).state.load();
    if (state < 6) ++counts.by_state[state];
  }
  return counts;
}

}  // namespace farm
