// fuzz_mx_answer.cc: libFuzzer target for the DNS answers the smtp transport
// parses (ParseMxAnswer on a res_nquery response, as a resolver or anyone
// spoofing one may send it), then OrderMx and IsNullMx on what it accepts.
// Any bytes must give records or a Status, never a crash, a hang or an
// out-of-bounds read (built with ASan/UBSan by cmake/fuzz.cmake).
#include <cstddef>
#include <cstdint>
#include <random>

#include "transport/mx_lookup.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 65535) return 0;  // a DNS message is at most 64 KiB
  auto records = transport::ParseMxAnswer(data, static_cast<int>(size));
  if (!records.ok()) return 0;
  for (const transport::MxRecord& r : *records) {
    // A host name is at most 253 characters (255 octets on the wire).
    if (r.host.size() > 255) __builtin_trap();
  }
  std::mt19937 rng(1);
  transport::OrderMx(&*records, &rng);
  for (size_t i = 1; i < records->size(); ++i) {
    if ((*records)[i - 1].preference > (*records)[i].preference)
      __builtin_trap();
  }
  (void)transport::IsNullMx(*records);
  return 0;
}
