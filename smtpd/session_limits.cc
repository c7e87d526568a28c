// session_limits.cc: the per-client limits of an smtpd Session (see
// session.h, client_limits.h): admission at connect, message and recipient
// rates, the session deadline and the stress-mode idle timeout. Replies and
// log lines follow Postfix's anvil/smtpd.
#include <glog/logging.h>

#include <algorithm>
#include <chrono>

#include "smtpd/session.h"

namespace smtpd {

namespace {

// While under stress an idle wait is cut into slices this long, so a
// session already waiting notices the stress.
constexpr int kStressSliceMs = 1000;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const char* LimitName(LimitExceeded::Kind kind) {
  switch (kind) {
    case LimitExceeded::Kind::kConcurrency:
      return "Connection concurrency";
    case LimitExceeded::Kind::kConnectionRate:
      return "Connection rate";
    case LimitExceeded::Kind::kMessageRate:
      return "Message delivery request rate";
    case LimitExceeded::Kind::kRecipientRate:
      return "Recipient address rate";
    case LimitExceeded::Kind::kNone:
      break;
  }
  return "";
}

}  // namespace

void Session::LogLimit(const LimitExceeded& over) {
  LOG(WARNING) << LimitName(over.kind) << " limit exceeded: " << over.count
               << " from [" << client_.address << "] for service smtp";
}

bool Session::AdmitClient() {
  started_ms_ = SteadyMs();
  if (limits_ == nullptr || client_trusted_) return true;
  LimitExceeded over = limits_->Connect(client_.address);
  if (!over) return true;
  LogLimit(over);
  Reply("421 4.7.0 " + options_.hostname +
        " Error: too many connections from " + client_.address);
  Flush();
  end_reason_ = std::string(LimitName(over.kind)) + " limit exceeded";
  return false;
}

bool Session::CountMessage() {
  if (limits_ == nullptr || client_trusted_) return true;
  return RefuseOverRate(limits_->CountMessage(client_.address),
                        "too much mail from ");
}

bool Session::CountRecipient() {
  if (limits_ == nullptr || client_trusted_) return true;
  return RefuseOverRate(limits_->CountRecipient(client_.address),
                        "too many recipients from ");
}

bool Session::RefuseOverRate(const LimitExceeded& over, std::string_view what) {
  if (!over) return true;
  LogLimit(over);
  ReplyError("450 4.7.1 Error: " + std::string(what) + client_.address);
  return false;
}

farm::Status Session::WaitForCommand() {
  if (limits_ == nullptr) return Fill(options_.command_timeout_ms);
  const int64_t idle_since = SteadyMs();
  const int64_t session_end = started_ms_ + options_.max_session_ms;
  while (true) {
    int64_t now = SteadyMs();
    bool stressed = limits_->UnderStress();
    int timeout = stressed ? std::min(options_.command_timeout_ms,
                                      options_.stress_command_timeout_ms)
                           : options_.command_timeout_ms;
    int64_t end = std::min(idle_since + timeout, session_end);
    if (now >= end) {
      if (now >= session_end) {
        LOG(INFO) << "session deadline reached for [" << client_.address << "]";
      } else if (stressed) {
        LOG(INFO) << "idle client [" << client_.address
                  << "] timed out under stress";
      }
      return farm::Status::TempFail("timeout");
    }
    int wait = static_cast<int>(std::min<int64_t>(end - now, kStressSliceMs));
    farm::Status s = Fill(wait);
    if (s.code() != farm::Status::Code::kTempFail) return s;
  }
}

}  // namespace smtpd
