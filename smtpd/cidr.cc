// cidr.cc: parsing and matching of IPv4/IPv6 networks for smtpd's access lists.
#include "smtpd/cidr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace smtpd {

IpAddress IpAddress::FromV4(const uint8_t b[4]) {
  IpAddress a;
  a.bytes[10] = 0xff;
  a.bytes[11] = 0xff;
  std::memcpy(&a.bytes[12], b, 4);
  a.is_v4 = true;
  return a;
}

IpAddress IpAddress::FromV6(const uint8_t b[16]) {
  IpAddress a;
  std::memcpy(a.bytes.data(), b, 16);
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  a.is_v4 = std::memcmp(b, kMapped, 12) == 0;
  return a;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.empty() || text.size() > 64) return std::nullopt;
  std::string s(text);
  uint8_t buf[16];
  if (::inet_pton(AF_INET, s.c_str(), buf) == 1) return FromV4(buf);
  if (::inet_pton(AF_INET6, s.c_str(), buf) == 1) return FromV6(buf);
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char out[INET6_ADDRSTRLEN];
  if (is_v4) {
    ::inet_ntop(AF_INET, &bytes[12], out, sizeof(out));
  } else {
    ::inet_ntop(AF_INET6, bytes.data(), out, sizeof(out));
  }
  return out;
}

farm::StatusOr<Cidr> Cidr::Parse(std::string_view text) {
  std::string_view addr_text = text;
  std::optional<int> written;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr_text = text.substr(0, slash);
    std::string_view bits = text.substr(slash + 1);
    int value = -1;
    auto [ptr, ec] =
        std::from_chars(bits.data(), bits.data() + bits.size(), value);
    if (bits.empty() || ec != std::errc() || ptr != bits.data() + bits.size()) {
      return farm::Status::Invalid("bad prefix length in network \"" +
                                   std::string(text) + "\"");
    }
    written = value;
  }
  auto addr = IpAddress::Parse(addr_text);
  if (!addr) {
    return farm::Status::Invalid("not an IPv4/IPv6 network: \"" +
                                 std::string(text) + "\"");
  }
  // "::ffff:10.0.0.0/104" is a v6 prefix even though the address is v4-mapped.
  bool v4_literal = addr_text.find(':') == std::string_view::npos;
  int max_written = v4_literal ? 32 : 128;
  int w = written.value_or(max_written);
  if (w < 0 || w > max_written) {
    return farm::Status::Invalid("prefix length out of range in network \"" +
                                 std::string(text) + "\"");
  }
  Cidr cidr;
  cidr.prefix_bits = v4_literal ? 96 + w : w;
  cidr.written_v4 = v4_literal;
  cidr.network = *addr;
  // Mask host bits so Contains() can compare bytes directly.
  for (int i = 0; i < 16; ++i) {
    int keep = std::max(0, std::min(8, cidr.prefix_bits - i * 8));
    uint8_t mask = keep == 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
    cidr.network.bytes[i] &= mask;
  }
  return cidr;
}

bool Cidr::Contains(const IpAddress& addr) const {
  // A v6 network never matches a v4 client through the mapped prefix unless the
  // network itself was written as v4 (or as ::ffff:0:0/96 and longer).
  int full = prefix_bits / 8;
  if (std::memcmp(addr.bytes.data(), network.bytes.data(), full) != 0)
    return false;
  int rest = prefix_bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (addr.bytes[full] & mask) == network.bytes[full];
}

farm::StatusOr<CidrList> CidrList::Parse(
    const std::vector<std::string>& entries) {
  CidrList list;
  for (const std::string& e : entries) {
    auto cidr = Cidr::Parse(e);
    if (!cidr.ok()) return cidr.status();
    list.entries_.push_back(*cidr);
  }
  return list;
}

bool CidrList::Contains(const IpAddress& addr) const {
  for (const Cidr& c : entries_) {
    if (c.Contains(addr)) return true;
  }
  return false;
}

bool CidrList::Contains(std::string_view addr_text) const {
  auto addr = IpAddress::Parse(addr_text);
  return addr && Contains(*addr);
}

}  // namespace smtpd
