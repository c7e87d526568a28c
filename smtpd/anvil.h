// anvil.h: mailfarm-smtpd's per-client counters (Postfix's anvil) in one
// shared-memory table that the manager maps before it forks, so every child
// counts against the same numbers without a round trip: concurrent sessions
// are one cell per farm slot (who this child serves, cleared when it
// leaves; a dead child's cell is ignored by its pid), rates are a small
// hash table of fixed windows per client address under a robust
// process-shared mutex (a child killed while holding it does not wedge the
// others). Why not a counter service in the manager: the farm manager is
// generic and does no I/O but signals; the table needs no extra process,
// socket or reply wait per connection.
#ifndef MAILFARM_SMTPD_ANVIL_H_
#define MAILFARM_SMTPD_ANVIL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "farm/status.h"
#include "smtpd/client_limits.h"

namespace smtpd {

struct AnvilLimits {
  uint32_t concurrency = 0;      // 0: unlimited
  uint32_t connection_rate = 0;  // per rate_unit_ms; 0: unlimited
  uint32_t message_rate = 0;
  uint32_t recipient_rate = 0;
  int64_t rate_unit_ms = 60000;
  uint32_t stress_sessions = 0;  // sessions at which the farm is stressed
};

struct AnvilShared;  // the mapped layout (anvil.cc)

// The table. Create in the manager before forking; children use it through
// AnvilClient. Thread-compatible, shared between processes.
class AnvilTable {
 public:
  // `slots`: the farm's scoreboard slot count (a child's slot indexes its
  // session cell). Fails when the mapping or the mutex cannot be made.
  static farm::StatusOr<std::unique_ptr<AnvilTable>> Create(int slots);
  ~AnvilTable();
  AnvilTable(const AnvilTable&) = delete;
  AnvilTable& operator=(const AnvilTable&) = delete;

  // Admits a session of `address` in `slot` (held until Leave), or says
  // which limit it would exceed. `now_ms`: a monotonic clock.
  LimitExceeded Connect(int slot, const std::string& address,
                        const AnvilLimits& limits, int64_t now_ms);
  void Leave(int slot);
  LimitExceeded CountMessage(const std::string& address,
                             const AnvilLimits& limits, int64_t now_ms);
  LimitExceeded CountRecipient(const std::string& address,
                               const AnvilLimits& limits, int64_t now_ms);
  // Children currently in a session.
  uint32_t ActiveSessions() const;

 private:
  AnvilTable(AnvilShared* shared, size_t size) : shared_(shared), size_(size) {}
  AnvilShared* shared_;
  size_t size_;
};

// One session's limits on the shared table; leaves its session cell when
// destroyed.
class AnvilClient : public ClientLimits {
 public:
  AnvilClient(AnvilTable* table, int slot, const AnvilLimits& limits);
  ~AnvilClient() override;
  LimitExceeded Connect(const std::string& address) override;
  LimitExceeded CountMessage(const std::string& address) override;
  LimitExceeded CountRecipient(const std::string& address) override;
  bool UnderStress() override;

 private:
  AnvilTable* table_;
  int slot_;
  AnvilLimits limits_;
  bool holding_ = false;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_ANVIL_H_
