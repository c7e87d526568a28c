// maildrop_file.cc: encoding and checked decoding of spool/maildrop/ files.
#include "scheduler/maildrop_file.h"

#include <google/protobuf/io/coded_stream.h>

#include <cstring>

namespace mailfarm::scheduler {

namespace {
constexpr size_t kMagicBytes = sizeof(kMaildropMagic) - 1;
}  // namespace

std::string EncodeMaildropFile(InjectRequest request, std::string_view body) {
  request.set_size(body.size());
  std::string header = request.SerializeAsString();
  std::string out(kMaildropMagic, kMagicBytes);
  uint8_t varint[10];
  uint8_t* end = google::protobuf::io::CodedOutputStream::WriteVarint32ToArray(
      static_cast<uint32_t>(header.size()), varint);
  out.append(reinterpret_cast<const char*>(varint), end - varint);
  out += header;
  out.append(body.data(), body.size());
  return out;
}

farm::Status DecodeMaildropFile(std::string_view file, size_t max_request_bytes,
                                InjectRequest* request, std::string* body) {
  if (file.size() < kMagicBytes ||
      std::memcmp(file.data(), kMaildropMagic, kMagicBytes) != 0) {
    return farm::Status::Invalid("not a maildrop file (no MFD1 magic)");
  }
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(file.data()) + kMagicBytes,
      static_cast<int>(file.size() - kMagicBytes));
  uint32_t length = 0;
  if (!in.ReadVarint32(&length))
    return farm::Status::Invalid("truncated request length");
  if (length > max_request_bytes) {
    return farm::Status::Invalid("request of " + std::to_string(length) +
                                 " bytes exceeds the limit of " +
                                 std::to_string(max_request_bytes));
  }
  size_t start = kMagicBytes + static_cast<size_t>(in.CurrentPosition());
  if (file.size() - start < length)
    return farm::Status::Invalid("truncated request");
  if (!request->ParseFromArray(file.data() + start, static_cast<int>(length)))
    return farm::Status::Invalid("unparsable request");
  std::string_view rest = file.substr(start + length);
  if (rest.size() != request->size()) {
    return farm::Status::Invalid("body of " + std::to_string(rest.size()) +
                                 " bytes, request says " +
                                 std::to_string(request->size()));
  }
  body->assign(rest.data(), rest.size());
  return farm::Status::Ok();
}

}  // namespace mailfarm::scheduler
