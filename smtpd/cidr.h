// cidr.h: IPv4/IPv6 network lists (CIDR) for mailfarm-smtpd's relay control
// (trusted_networks) and PROXY protocol gate (proxy_networks). Pure code, no
// I/O.
#ifndef MAILFARM_SMTPD_CIDR_H_
#define MAILFARM_SMTPD_CIDR_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace smtpd {

// An IP address held as 16 bytes; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d)
// so that a v4 network also matches a v4 client seen on a v6 socket.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  bool is_v4 = false;

  // Parses a v4 or v6 literal ("127.0.0.1", "::1", "::ffff:10.0.0.1").
  static std::optional<IpAddress> Parse(std::string_view text);
  static IpAddress FromV4(const uint8_t b[4]);
  static IpAddress FromV6(const uint8_t b[16]);
  // Text form: "1.2.3.4" for v4 (and v4-mapped), "2001:db8::1" for v6.
  std::string ToString() const;
};

// One network: address + prefix length (in v6 bits; a v4 /n is stored as
// /96+n).
struct Cidr {
  IpAddress network;
  int prefix_bits = 128;
  bool written_v4 = false;  // written as a dotted quad (prefix /0../32)

  // "10.0.0.0/8", "2001:db8::/32", or a bare address (a host route).
  // Invalid: bad address, prefix out of range, host bits set is allowed
  // (masked).
  static farm::StatusOr<Cidr> Parse(std::string_view text);
  bool Contains(const IpAddress& addr) const;
  // Prefix length as written (/0../32 for v4, /0../128 for v6).
  int WrittenPrefix() const {
    return written_v4 ? prefix_bits - 96 : prefix_bits;
  }
};

// A list of networks. Thread-compatible (const after construction).
class CidrList {
 public:
  // Parses every entry; the first bad one fails with its text in the message.
  static farm::StatusOr<CidrList> Parse(
      const std::vector<std::string>& entries);
  bool Contains(const IpAddress& addr) const;
  bool Contains(std::string_view addr_text) const;
  const std::vector<Cidr>& entries() const { return entries_; }

 private:
  std::vector<Cidr> entries_;
};

}  // namespace smtpd

#endif  // MAILFARM_SMTPD_CIDR_H_
