// maildrop_file.h: the format of a file in spool/maildrop/, where sendmail
// (through the setgid mailfarm-postdrop) leaves a message while the scheduler
// is unreachable, and the scheduler's reading of it. Written by
// mailfarm-inject, read by the scheduler's MaildropPickup; pure functions.
//
//   "MFD1" | varint length | InjectRequest | body (exactly request.size bytes)
#ifndef MAILFARM_SCHEDULER_MAILDROP_FILE_H_
#define MAILFARM_SCHEDULER_MAILDROP_FILE_H_

#include <string>
#include <string_view>

#include "farm/status.h"
#include "wire.pb.h"

namespace mailfarm::scheduler {

inline constexpr char kMaildropMagic[] = "MFD1";

// The file's bytes for `request` (its size set to body.size()) and `body`.
std::string EncodeMaildropFile(InjectRequest request, std::string_view body);

// Parses a maildrop file. The file is untrusted (any local user can write
// one through postdrop): a wrong magic, a request longer than
// max_request_bytes or unparsable, or a body whose length is not the
// request's size is an Invalid status saying which.
farm::Status DecodeMaildropFile(std::string_view file, size_t max_request_bytes,
                                InjectRequest* request, std::string* body);

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_MAILDROP_FILE_H_
