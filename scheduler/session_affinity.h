// session_affinity.h: which idle farm connection (one transport child each)
// still holds an open SMTP session to which destination, from
// Result.open_session, so that a destination's next job goes to the child
// that can send it without a new connection. Used by FarmLink when it picks
// a connection for a job.
#ifndef MAILFARM_SCHEDULER_SESSION_AFFINITY_H_
#define MAILFARM_SCHEDULER_SESSION_AFFINITY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mailfarm::scheduler {

// Not thread-safe: loop thread only. ConnId is any stable handle the caller
// has for a connection (FarmLink uses the Conn's address).
class SessionAffinity {
 public:
  using ConnId = uintptr_t;

  // `conn` finished a job and is idle; `session` is what its child reported
  // in Result.open_session ("<channel> <destination>", "" = none).
  void SetIdle(ConnId conn, std::string_view session);
  // `conn` took a job or closed: its session is no longer on offer.
  void Forget(ConnId conn);
  // The idle connection that most recently reported an open session to
  // `session`, if any. Does not remove it (the caller calls Forget when it
  // hands the connection a job).
  std::optional<ConnId> Find(std::string_view session) const;
  // True when `conn` is idle holding an open session (a job for another
  // destination would waste it: pick such a connection last).
  bool HoldsSession(ConnId conn) const { return by_conn_.count(conn) > 0; }
  size_t open_sessions() const { return by_conn_.size(); }

 private:
  std::unordered_map<std::string, std::vector<ConnId>> by_session_;
  std::unordered_map<ConnId, std::string> by_conn_;
};

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_SESSION_AFFINITY_H_
