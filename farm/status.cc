// status.cc: errno to Status.
#include "farm/status.h"

#include <cerrno>
#include <cstring>

namespace farm {

Status Status::FromErrno(const std::string& what, int err) {
  Code code = Code::kError;
  if (err == ENOSPC || err == EDQUOT) code = Code::kNoSpace;
  if (err == ENOENT) code = Code::kNotFound;
  return Status(code, what + ": " + std::strerror(err));
}

}  // namespace farm
