// queue_id.cc: time-ordered queue ids.
#include "scheduler/queue_id.h"

#include <cstdio>

namespace mailfarm::scheduler {

std::string QueueIdGenerator::Next(int64_t now_unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now_unix_ms > last_ms_) {
    last_ms_ = now_unix_ms;
    counter_ = 0;
  } else if (++counter_ > 0xffff) {
    ++last_ms_;  // 65,536 ids in one ms: borrow the next millisecond
    counter_ = 0;
  }
  char buf[kQueueIdLength + 1];
  std::snprintf(buf, sizeof buf, "%012llx%04x",
                static_cast<unsigned long long>(last_ms_ & 0xffffffffffffLL),
                counter_);
  last_.assign(buf, kQueueIdLength);
  return last_;
}

void QueueIdGenerator::Seed(std::string_view qid) {
  if (!IsValidQueueId(qid)) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (!last_.empty() && qid <= last_) return;
  last_ms_ = QueueIdTimeMs(qid);
  counter_ = 0;
  for (char c : qid.substr(12))
    counter_ = counter_ * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
  last_ = std::string(qid);
}

std::string QueueIdGenerator::Last() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

bool IsValidQueueId(std::string_view qid) {
  if (qid.size() != kQueueIdLength) return false;
  for (char c : qid) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

int64_t QueueIdTimeMs(std::string_view qid) {
  int64_t ms = 0;
  for (char c : qid.substr(0, 12))
    ms = ms * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
  return ms;
}

char QueueIdHashDir(std::string_view qid) { return qid[7]; }

}  // namespace mailfarm::scheduler
