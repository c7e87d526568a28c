// queue_id.cc: time-ordered queue ids.
#include "scheduler/queue_id.h"

#include <cstdio>

namespace mailfarm::scheduler {

namespace {

std::string FormatQueueId(int64_t ms, uint32_t counter) {
  char buf[kQueueIdLength + 1];
  std::snprintf(buf, sizeof buf, "%012llx%04x",
                static_cast<unsigned long long>(ms & 0xffffffffffffLL),
                counter);
  return std::string(buf, kQueueIdLength);
}

// The value of lowercase hex digits (valid ones: see IsValidQueueId).
int64_t HexValue(std::string_view digits) {
  int64_t value = 0;
  for (char c : digits)
    value = value * 16 + (c <= '9' ? c - '0' : c - 'a' + 10);
  return value;
}

}  // namespace

std::string QueueIdGenerator::Next(int64_t now_unix_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now_unix_ms > last_ms_) {
    last_ms_ = now_unix_ms;
    counter_ = 0;
  } else if (++counter_ > 0xffff) {
    ++last_ms_;  // 65,536 ids in one ms: borrow the next millisecond
    counter_ = 0;
  }
  return FormatQueueId(last_ms_, counter_);
}

void QueueIdGenerator::Seed(std::string_view qid) {
  if (!IsValidQueueId(qid)) return;
  int64_t ms = QueueIdTimeMs(qid);
  auto counter = static_cast<uint32_t>(HexValue(qid.substr(12)));
  std::lock_guard<std::mutex> lock(mu_);
  if (ms < last_ms_ || (ms == last_ms_ && counter <= counter_)) return;
  last_ms_ = ms;
  counter_ = counter;
}

std::string QueueIdGenerator::Last() {
  std::lock_guard<std::mutex> lock(mu_);
  return last_ms_ == 0 ? std::string() : FormatQueueId(last_ms_, counter_);
}

bool IsValidQueueId(std::string_view qid) {
  if (qid.size() != kQueueIdLength) return false;
  for (char c : qid) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

int64_t QueueIdTimeMs(std::string_view qid) {
  return HexValue(qid.substr(0, 12));
}

char QueueIdHashDir(std::string_view qid) { return qid[7]; }

}  // namespace mailfarm::scheduler
