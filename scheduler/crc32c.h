// crc32c.h: CRC-32C (Castagnoli), the checksum of queue-file envelopes, state
// records and bodies (scheduler/spool_file.cc, mailfarm-replay).
#ifndef MAILFARM_SCHEDULER_CRC32C_H_
#define MAILFARM_SCHEDULER_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mailfarm::scheduler {

// Extends `crc` (the value of a previous call, or 0 to start) over [data,
// data+size). Thread-safe. Crc32c("123456789") == 0xE3069283.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);
// The same without CPU-specific instructions (what Crc32cExtend falls back
// to; its test compares the two).
uint32_t Crc32cExtendPortable(uint32_t crc, const void* data, size_t size);

inline uint32_t Crc32c(std::string_view data) {
  return Crc32cExtend(0, data.data(), data.size());
}

}  // namespace mailfarm::scheduler

#endif  // MAILFARM_SCHEDULER_CRC32C_H_
