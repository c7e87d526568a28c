// session_affinity.cc: the idle-session index (see the header).
#include "scheduler/session_affinity.h"

#include <algorithm>

namespace mailfarm::scheduler {

void SessionAffinity::SetIdle(ConnId conn, std::string_view session) {
  Forget(conn);
  if (session.empty()) return;
  std::string key(session);
  by_session_[key].push_back(conn);
  by_conn_.emplace(conn, std::move(key));
}

void SessionAffinity::Forget(ConnId conn) {
  auto it = by_conn_.find(conn);
  if (it == by_conn_.end()) return;
  auto s = by_session_.find(it->second);
  if (s != by_session_.end()) {
    std::erase(s->second, conn);
    if (s->second.empty()) by_session_.erase(s);
  }
  by_conn_.erase(it);
}

std::optional<SessionAffinity::ConnId> SessionAffinity::Find(
    std::string_view session) const {
  if (session.empty()) return std::nullopt;
  auto it = by_session_.find(std::string(session));
  if (it == by_session_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

}  // namespace mailfarm::scheduler
