// anvil.cc: the shared per-client counters of mailfarm-smtpd (see anvil.h).
#include "smtpd/anvil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "smtpd/cidr.h"

namespace smtpd {

namespace {

// Rate windows kept at once; a full table evicts the oldest window it probes.
constexpr uint32_t kRateEntries = 4096;
constexpr uint32_t kProbe = 32;

struct RateEntry {
  std::array<uint8_t, 16> address;
  bool used;
  int64_t window_start_ms;
  uint32_t connections;
  uint32_t messages;
  uint32_t recipients;
};

// Who a farm slot's child serves right now.
struct SessionCell {
  std::atomic<int32_t> pid;  // 0: no session
  std::array<uint8_t, 16> address;
};

bool Alive(int32_t pid) {
  return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
}

}  // namespace

struct AnvilShared {
  pthread_mutex_t mutex;
  int32_t slots;
  RateEntry rates[kRateEntries];
  SessionCell* cells() { return reinterpret_cast<SessionCell*>(this + 1); }
};

namespace {

// Holds the table's mutex; recovers it when its holder died.
class TableLock {
 public:
  explicit TableLock(pthread_mutex_t* m) : m_(m) {
    if (pthread_mutex_lock(m_) == EOWNERDEAD) pthread_mutex_consistent(m_);
  }
  ~TableLock() { pthread_mutex_unlock(m_); }

 private:
  pthread_mutex_t* m_;
};

// The rate window of `address`, rolled over when its time unit has passed.
RateEntry* RateFor(AnvilShared* s, const std::array<uint8_t, 16>& address,
                   int64_t now_ms, int64_t unit_ms) {
  uint32_t hash = 2166136261u;  // FNV-1a
  for (uint8_t b : address) hash = (hash ^ b) * 16777619u;
  RateEntry* match = nullptr;
  RateEntry* free_or_expired = nullptr;
  RateEntry* oldest = nullptr;
  for (uint32_t i = 0; i < kProbe && match == nullptr; ++i) {
    RateEntry* e = &s->rates[(hash + i) % kRateEntries];
    if (e->used && e->address == address) {
      match = e;
    } else if (!e->used || now_ms - e->window_start_ms >= unit_ms) {
      if (free_or_expired == nullptr) free_or_expired = e;
    } else if (oldest == nullptr ||
               e->window_start_ms < oldest->window_start_ms) {
      oldest = e;
    }
  }
  RateEntry* e = match != nullptr             ? match
                 : free_or_expired != nullptr ? free_or_expired
                                              : oldest;
  if (e != match || now_ms - e->window_start_ms >= unit_ms)
    *e = RateEntry{address, true, now_ms, 0, 0, 0};
  return e;
}

LimitExceeded Over(LimitExceeded::Kind kind, uint32_t count, uint32_t limit) {
  if (limit == 0 || count <= limit) return LimitExceeded{};
  return LimitExceeded{kind, count};
}

}  // namespace

farm::StatusOr<std::unique_ptr<AnvilTable>> AnvilTable::Create(int slots) {
  size_t size = sizeof(AnvilShared) + sizeof(SessionCell) * slots;
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED)
    return farm::Status::FromErrno("mmap(anvil table)", errno);
  auto* shared = static_cast<AnvilShared*>(base);  // zero-filled by mmap
  std::unique_ptr<AnvilTable> table(new AnvilTable(shared, size));
  shared->slots = slots;
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  int rc = pthread_mutex_init(&shared->mutex, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) return farm::Status::FromErrno("anvil table mutex", rc);
  return table;
}

AnvilTable::~AnvilTable() { ::munmap(shared_, size_); }

LimitExceeded AnvilTable::Connect(int slot, const std::string& address,
                                  const AnvilLimits& limits, int64_t now_ms) {
  auto ip = IpAddress::Parse(address);
  if (!ip) return LimitExceeded{};
  TableLock lock(&shared_->mutex);
  RateEntry* rate = RateFor(shared_, ip->bytes, now_ms, limits.rate_unit_ms);
  ++rate->connections;
  uint32_t sessions = 1;  // this one
  SessionCell* cells = shared_->cells();
  for (int i = 0; i < shared_->slots; ++i) {
    int32_t pid = cells[i].pid.load();
    if (i != slot && pid != 0 && cells[i].address == ip->bytes && Alive(pid))
      ++sessions;
  }
  if (auto over = Over(LimitExceeded::Kind::kConcurrency, sessions,
                       limits.concurrency)) {
    return over;
  }
  if (auto over = Over(LimitExceeded::Kind::kConnectionRate, rate->connections,
                       limits.connection_rate)) {
    return over;
  }
  if (slot >= 0 && slot < shared_->slots) {
    cells[slot].address = ip->bytes;
    cells[slot].pid.store(static_cast<int32_t>(::getpid()));
  }
  return LimitExceeded{};
}

void AnvilTable::Leave(int slot) {
  if (slot < 0 || slot >= shared_->slots) return;
  TableLock lock(&shared_->mutex);
  shared_->cells()[slot].pid.store(0);
}

namespace {

// Counts one event of `address` in its window's `counter`.
LimitExceeded CountEvent(AnvilShared* shared, const std::string& address,
                         uint32_t RateEntry::*counter, LimitExceeded::Kind kind,
                         uint32_t limit, int64_t unit_ms, int64_t now_ms) {
  auto ip = IpAddress::Parse(address);
  if (!ip || limit == 0) return LimitExceeded{};
  TableLock lock(&shared->mutex);
  RateEntry* rate = RateFor(shared, ip->bytes, now_ms, unit_ms);
  return Over(kind, ++(rate->*counter), limit);
}

}  // namespace

LimitExceeded AnvilTable::CountMessage(const std::string& address,
                                       const AnvilLimits& limits,
                                       int64_t now_ms) {
  return CountEvent(shared_, address, &RateEntry::messages,
                    LimitExceeded::Kind::kMessageRate, limits.message_rate,
                    limits.rate_unit_ms, now_ms);
}

LimitExceeded AnvilTable::CountRecipient(const std::string& address,
                                         const AnvilLimits& limits,
                                         int64_t now_ms) {
  return CountEvent(shared_, address, &RateEntry::recipients,
                    LimitExceeded::Kind::kRecipientRate, limits.recipient_rate,
                    limits.rate_unit_ms, now_ms);
}

uint32_t AnvilTable::ActiveSessions() const {
  uint32_t n = 0;
  SessionCell* cells = shared_->cells();
  for (int i = 0; i < shared_->slots; ++i) {
    if (Alive(cells[i].pid.load())) ++n;
  }
  return n;
}

namespace {

int64_t MonotonicMs() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace

AnvilClient::AnvilClient(AnvilTable* table, int slot, const AnvilLimits& limits)
    : table_(table), slot_(slot), limits_(limits) {}

AnvilClient::~AnvilClient() {
  if (holding_) table_->Leave(slot_);
}

LimitExceeded AnvilClient::Connect(const std::string& address) {
  LimitExceeded over = table_->Connect(slot_, address, limits_, MonotonicMs());
  holding_ = !over;
  return over;
}

LimitExceeded AnvilClient::CountMessage(const std::string& address) {
  return table_->CountMessage(address, limits_, MonotonicMs());
}

LimitExceeded AnvilClient::CountRecipient(const std::string& address) {
  return table_->CountRecipient(address, limits_, MonotonicMs());
}

bool AnvilClient::UnderStress() {
  return limits_.stress_sessions > 0 &&
         table_->ActiveSessions() >= limits_.stress_sessions;
}

}  // namespace smtpd
