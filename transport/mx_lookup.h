// mx_lookup.h: where to connect for an SMTP nexthop. Parses the nexthop forms
// ("[host]:port", "[host]", "domain:port", "domain"), looks MX records up with
// glibc's libresolv (res_nquery + ns_parserr), orders them (preference, random
// among equals), handles RFC 7505 null MX, and falls back to the domain's own
// A/AAAA. Blocking: used by the smtp transport in a farm child.
#ifndef MAILFARM_TRANSPORT_MX_LOOKUP_H_
#define MAILFARM_TRANSPORT_MX_LOOKUP_H_

#include <sys/socket.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "farm/status.h"

namespace transport {

struct Nexthop {
  std::string host;      // domain or host name, or an address literal
  int port = 0;          // 0: the channel's default port
  bool skip_mx = false;  // "[host]" form
};
// Parses a nexthop. kInvalid for an empty host, a bad port or a missing "]".
farm::StatusOr<Nexthop> ParseNexthop(std::string_view text);

struct MxRecord {
  uint16_t preference = 0;
  std::string host;  // without the trailing dot; "" is the root (null MX)
};

// Parses the MX answers of a DNS response (as res_nquery returns it).
// kInvalid when the message is malformed. Records of other types are skipped.
farm::StatusOr<std::vector<MxRecord>> ParseMxAnswer(const unsigned char* msg,
                                                    int size);

// Sorts by preference; records of equal preference are shuffled with `rng`
// (RFC 5321 section 5.1 load spreading).
void OrderMx(std::vector<MxRecord>* records, std::mt19937* rng);

// RFC 7505: exactly one MX record, preference 0, host ".".
bool IsNullMx(const std::vector<MxRecord>& records);

// One address to try, with the host name it was found for.
struct Endpoint {
  std::string host;  // MX host or nexthop host (for TLS names and logs)
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string address_text;  // "192.0.2.1" or "2001:db8::1"
  int port = 25;
  std::string Describe() const;  // "host[addr]:port"
};

// Resolution outcome: endpoints in the order to try, or a failure whose
// Status code is kTempFail (try later) or kInvalid (permanent: no such domain,
// null MX); dsn gives the enhanced status code for the failure.
struct Resolution {
  farm::Status status;
  std::string dsn;
  std::vector<Endpoint> endpoints;
};

// Options of a resolver; dns_servers (numeric IPv4 "addr" or "addr:port")
// replace /etc/resolv.conf's name servers when not empty.
struct ResolverOptions {
  std::vector<std::string> dns_servers;
  int default_port = 25;
};

// Resolves `nexthop` into endpoints. Blocking (DNS). Thread-compatible: each
// call has its own resolver state.
Resolution Resolve(const Nexthop& nexthop, const ResolverOptions& options,
                   std::mt19937* rng);

}  // namespace transport

#endif  // MAILFARM_TRANSPORT_MX_LOOKUP_H_
