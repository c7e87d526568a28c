// status.h: errors as values. Every fallible call in mailfarm returns a Status
// (or StatusOr<T>); errno is turned into text once, where it happens, with the
// path.
#ifndef MAILFARM_FARM_STATUS_H_
#define MAILFARM_FARM_STATUS_H_

#include <optional>
#include <string>
#include <utility>

namespace farm {

class Status {
 public:
  enum class Code {
    kOk,
    kError,
    kNotFound,
    kTempFail,
    kInvalid,
    kNoSpace,
    kClosed
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(std::string msg) {
    return Status(Code::kError, std::move(msg));
  }
  static Status Invalid(std::string msg) {
    return Status(Code::kInvalid, std::move(msg));
  }
  static Status NotFound(std::string msg) {
    return Status(Code::kNotFound, std::move(msg));
  }
  static Status TempFail(std::string msg) {
    return Status(Code::kTempFail, std::move(msg));
  }
  static Status Closed(std::string msg) {
    return Status(Code::kClosed, std::move(msg));
  }
  // "what: strerror(err)"; ENOSPC and EDQUOT give kNoSpace so callers can
  // tempfail.
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const { return ok() ? "OK" : message_; }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <typename T>
class StatusOr {
 public:
  StatusOr(Status status)
      : status_(std::move(status)) {}              // NOLINT: implicit by design
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() { return *value_; }
  const T& value() const { return *value_; }
  T* operator->() { return &*value_; }
  T& operator*() { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace farm

#define MAILFARM_RETURN_IF_ERROR(expr) \
  do {                                 \
    ::farm::Status _status = (expr);   \
    if (!_status.ok()) return _status; \
  } while (0)

#endif  // MAILFARM_FARM_STATUS_H_
