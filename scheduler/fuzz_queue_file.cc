// fuzz_queue_file.cc: libFuzzer target for the queue-file parser that
// mailfarm-replay and the scheduler's adopt run on every file in the spool. Any
// byte string must give a queue file or a Status, never a crash, a hang or an
// out-of-bounds read (built with ASan/UBSan by scheduler/tools.cmake).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "scheduler/spool_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  mailfarm::scheduler::ReadOptions options;
  options.check_file_name = false;
  auto file = mailfarm::scheduler::ParseQueueFile(bytes, "", options);
  if (file.ok()) {
    // What the parser promises about a file it accepts.
    if (file->body_offset + file->envelope.body_size() > size) __builtin_trap();
    if (file->valid_size > size) __builtin_trap();
  }
  return 0;
}
