// sd_notify.h: systemd's readiness protocol (one datagram to $NOTIFY_SOCKET),
// small enough that mailfarmd needs no libsystemd. Used by mailfarmd only.
#ifndef MAILFARM_FARM_SD_NOTIFY_H_
#define MAILFARM_FARM_SD_NOTIFY_H_

#include <string>

namespace farm {

// Sends `state` (e.g. "READY=1") when NOTIFY_SOCKET is set; a no-op otherwise.
// Returns false only when the socket is set but the send failed.
bool SdNotify(const std::string& state);

}  // namespace farm

#endif  // MAILFARM_FARM_SD_NOTIFY_H_
