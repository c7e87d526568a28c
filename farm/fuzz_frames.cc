// fuzz_frames.cc: libFuzzer target for the framed protobuf channels
// (farm/framed_stream.h): what a peer on inject.sock, control.sock or a farm
// socket sends. The bytes are split into frames with PeekFrame, the way
// EventChannel and FramedStream do, and each payload is parsed as every
// message those sockets carry. Any bytes must give frames or a Status, never
// a crash, a hang or an out-of-bounds read (built with ASan/UBSan by
// cmake/fuzz.cmake).
#include <cstddef>
#include <cstdint>

#include "farm/framed_stream.h"
#include "wire.pb.h"

namespace {

constexpr size_t kMaxFrame = 1 << 20;  // the default frame limit

template <typename Message>
void ParseAs(const uint8_t* payload, size_t size) {
  Message message;
  if (message.ParseFromArray(payload, static_cast<int>(size))) {
    // What a reply or a log line does with it.
    (void)message.ByteSizeLong();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t pos = 0;
  while (pos < size) {
    size_t header = 0, payload = 0;
    farm::Status peek =
        farm::PeekFrame(data + pos, size - pos, kMaxFrame, &header, &payload);
    if (!peek.ok()) break;  // more bytes needed, or a corrupt prefix
    // What PeekFrame promises its callers before they read the payload.
    if (header == 0 || header > 10 || payload > kMaxFrame ||
        header + payload > size - pos)
      __builtin_trap();
    const uint8_t* p = data + pos + header;
    ParseAs<mailfarm::InjectFrame>(p, payload);
    ParseAs<mailfarm::InjectReply>(p, payload);
    ParseAs<mailfarm::ChildFrame>(p, payload);
    ParseAs<mailfarm::Job>(p, payload);
    ParseAs<mailfarm::Result>(p, payload);
    ParseAs<mailfarm::ControlRequest>(p, payload);
    ParseAs<mailfarm::ControlReply>(p, payload);
    pos += header + payload;
  }
  return 0;
}
