// proxy_protocol.cc: PROXY protocol v1/v2 header parsing (see the HAProxy spec,
// "The PROXY protocol", versions 1 and 2).
#include "smtpd/proxy_protocol.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>
#include <string_view>
#include <vector>

#include "smtpd/cidr.h"

namespace smtpd {

namespace {

constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr char kV1Prefix[] = "PROXY ";
constexpr size_t kV1Max = 107;

bool ParsePort(std::string_view s, int* port) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *port);
  return ec == std::errc() && ptr == s.data() + s.size() && *port <= 65535;
}

std::vector<std::string_view> SplitSpaces(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t sp = s.find(' ', start);
    if (sp == std::string_view::npos) sp = s.size();
    out.push_back(s.substr(start, sp - start));
    start = sp + 1;
  }
  return out;
}

farm::Status ParseV1(const char* data, size_t size, ProxyHeader* header,
                     size_t* consumed) {
  std::string_view view(data, std::min(size, kV1Max));
  size_t crlf = view.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (size >= kV1Max)
      return farm::Status::Invalid("PROXY v1 header longer than 107 octets");
    if (view.find('\n') != std::string_view::npos) {
      return farm::Status::Invalid("PROXY v1 header not ended by CRLF");
    }
    return farm::Status::TempFail("need more");
  }
  std::string_view line = view.substr(6, crlf - 6);
  auto fields = SplitSpaces(line);
  header->version = 1;
  *consumed = crlf + 2;
  if (!fields.empty() && fields[0] == "UNKNOWN") {
    header->has_address = false;  // the rest of the line is ignored by the spec
    return farm::Status::Ok();
  }
  if (fields.size() != 5 || (fields[0] != "TCP4" && fields[0] != "TCP6")) {
    return farm::Status::Invalid("malformed PROXY v1 header");
  }
  bool want_v4 = fields[0] == "TCP4";
  auto src = IpAddress::Parse(fields[1]);
  auto dst = IpAddress::Parse(fields[2]);
  bool src_v4_literal = fields[1].find(':') == std::string_view::npos;
  bool dst_v4_literal = fields[2].find(':') == std::string_view::npos;
  if (!src || !dst || src_v4_literal != want_v4 || dst_v4_literal != want_v4) {
    return farm::Status::Invalid("bad address in PROXY v1 header");
  }
  if (!ParsePort(fields[3], &header->source_port) ||
      !ParsePort(fields[4], &header->dest_port)) {
    return farm::Status::Invalid("bad port in PROXY v1 header");
  }
  header->has_address = true;
  header->source_address = src->ToString();
  header->dest_address = dst->ToString();
  return farm::Status::Ok();
}

farm::Status ParseV2(const uint8_t* data, size_t size, ProxyHeader* header,
                     size_t* consumed) {
  if (size < 16) return farm::Status::TempFail("need more");
  uint8_t ver_cmd = data[12];
  uint8_t fam = data[13];
  size_t len = (static_cast<size_t>(data[14]) << 8) | data[15];
  if ((ver_cmd >> 4) != 2)
    return farm::Status::Invalid("PROXY v2 header with bad version");
  int command = ver_cmd & 0x0f;
  if (command > 1)
    return farm::Status::Invalid("PROXY v2 header with unknown command");
  if (16 + len > kMaxProxyHeader)
    return farm::Status::Invalid("PROXY v2 header too long");
  if (size < 16 + len) return farm::Status::TempFail("need more");
  header->version = 2;
  header->has_address = false;
  *consumed = 16 + len;
  const uint8_t* body = data + 16;
  if (command == 0)
    return farm::Status::Ok();  // LOCAL: health check, use the real peer
  switch (fam) {
    case 0x11: {  // TCP over IPv4
      if (len < 12)
        return farm::Status::Invalid("PROXY v2 IPv4 address block too short");
      header->source_address = IpAddress::FromV4(body).ToString();
      header->dest_address = IpAddress::FromV4(body + 4).ToString();
      header->source_port = (body[8] << 8) | body[9];
      header->dest_port = (body[10] << 8) | body[11];
      header->has_address = true;
      return farm::Status::Ok();
    }
    case 0x21: {  // TCP over IPv6
      if (len < 36)
        return farm::Status::Invalid("PROXY v2 IPv6 address block too short");
      header->source_address = IpAddress::FromV6(body).ToString();
      header->dest_address = IpAddress::FromV6(body + 16).ToString();
      header->source_port = (body[32] << 8) | body[33];
      header->dest_port = (body[34] << 8) | body[35];
      header->has_address = true;
      return farm::Status::Ok();
    }
    case 0x00:  // UNSPEC: keep the real peer, per the spec
      return farm::Status::Ok();
    default:
      return farm::Status::Invalid(
          "PROXY v2 header with unsupported address family");
  }
}

}  // namespace

farm::Status ParseProxyHeader(const char* data, size_t size,
                              ProxyHeader* header, size_t* consumed) {
  *header = ProxyHeader();
  *consumed = 0;
  size_t sig = std::min(size, sizeof(kV2Signature));
  if (size > 0 && std::memcmp(data, kV2Signature, sig) == 0) {
    return ParseV2(reinterpret_cast<const uint8_t*>(data), size, header,
                   consumed);
  }
  size_t pre = std::min(size, sizeof(kV1Prefix) - 1);
  if (std::memcmp(data, kV1Prefix, pre) == 0) {
    if (size < sizeof(kV1Prefix) - 1)
      return farm::Status::TempFail("need more");
    return ParseV1(data, size, header, consumed);
  }
  return farm::Status::Invalid("no PROXY protocol header");
}

}  // namespace smtpd
