// mx_lookup.cc: nexthop parsing, MX lookup and ordering, address resolution
// for the smtp transport (see mx_lookup.h).
#include "transport/mx_lookup.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace transport {

namespace {

constexpr size_t kMaxEndpoints = 20;

// A host name as an MX record may name one (RFC 1035 2.3.1, with '_'
// tolerated): labels of letters, digits, '-' and '_', each 1-63 long, 253 in
// all; "" is the null MX's root. dn_expand writes other octets as "\DDD"
// escapes, so a hostile answer would otherwise give a "host" of backslashes
// and digits (fuzz_mx_answer found one of 600 characters).
bool IsHostName(const std::string& host) {
  if (host.size() > 253) return false;
  size_t label = 0;
  for (char c : host) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok || ++label > 63) return false;
  }
  return true;
}

farm::StatusOr<int> ParsePort(std::string_view text) {
  if (text.empty() || text.size() > 5) {
    return farm::Status::Invalid("bad port \"" + std::string(text) + "\"");
  }
  int port = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return farm::Status::Invalid("bad port \"" + std::string(text) + "\"");
    }
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) {
    return farm::Status::Invalid("port out of range: " + std::string(text));
  }
  return port;
}

// Owns a res_state initialised with res_ninit (and freed with res_nclose).
class ResolverState {
 public:
  explicit ResolverState(const ResolverOptions& options) {
    memset(&state_, 0, sizeof(state_));
    ok_ = res_ninit(&state_) == 0;
    if (!ok_ || options.dns_servers.empty()) return;
    int count = 0;
    for (const std::string& server : options.dns_servers) {
      if (count >= MAXNS) break;
      std::string host = server;
      int port = NAMESERVER_PORT;
      size_t colon = server.rfind(':');
      if (colon != std::string::npos) {
        host = server.substr(0, colon);
        auto parsed = ParsePort(std::string_view(server).substr(colon + 1));
        if (parsed.ok()) port = *parsed;
      }
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      sin.sin_port = htons(static_cast<uint16_t>(port));
      if (inet_pton(AF_INET, host.c_str(), &sin.sin_addr) != 1) continue;
      state_.nsaddr_list[count++] = sin;
    }
    // glibc prefers nsaddr_list[n] once its family is set (get_nsaddr in
    // res_send.c), so these replace the servers read from resolv.conf.
    state_.nscount = count;
  }
  ~ResolverState() {
    if (ok_) res_nclose(&state_);
  }
  ResolverState(const ResolverState&) = delete;
  ResolverState& operator=(const ResolverState&) = delete;

  bool ok() const { return ok_; }
  res_state get() { return &state_; }

 private:
  struct __res_state state_;
  bool ok_ = false;
};

struct QueryOutcome {
  enum Kind { kAnswer, kNoSuchDomain, kNoData, kTryAgain } kind = kTryAgain;
  std::vector<unsigned char> answer;
  std::string error;
};

const char* TypeName(int type) {
  switch (type) {
    case ns_t_mx:
      return "MX";
    case ns_t_a:
      return "A";
    case ns_t_aaaa:
      return "AAAA";
  }
  return "?";
}

QueryOutcome Query(ResolverState& resolver, const std::string& name, int type) {
  QueryOutcome outcome;
  std::string what = "name=" + name + " type=" + TypeName(type);
  if (!resolver.ok()) {
    outcome.error = "resolver initialisation failed for " + what;
    return outcome;
  }
  outcome.answer.resize(65536);
  int n = res_nquery(resolver.get(), name.c_str(), ns_c_in, type,
                     outcome.answer.data(),
                     static_cast<int>(outcome.answer.size()));
  if (n >= 0) {
    outcome.answer.resize(n);
    outcome.kind = QueryOutcome::kAnswer;
    return outcome;
  }
  switch (resolver.get()->res_h_errno) {
    case HOST_NOT_FOUND:
      outcome.kind = QueryOutcome::kNoSuchDomain;
      outcome.error = "Name service error for " + what + ": Host not found";
      break;
    case NO_DATA:
      outcome.kind = QueryOutcome::kNoData;
      outcome.error = "Name service error for " + what + ": No data";
      break;
    default:
      outcome.kind = QueryOutcome::kTryAgain;
      outcome.error =
          "Name service error for " + what + ": Host not found, try again";
      break;
  }
  return outcome;
}

void AddEndpoint(const std::string& host, const sockaddr* sa, socklen_t len,
                 int port, std::vector<Endpoint>* out) {
  if (out->size() >= kMaxEndpoints) return;
  Endpoint ep;
  ep.host = host;
  memcpy(&ep.addr, sa, len);
  ep.addr_len = len;
  ep.port = port;
  char text[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ep.addr);
    sin->sin_port = htons(static_cast<uint16_t>(port));
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
  }
  ep.address_text = text;
  out->push_back(std::move(ep));
}

// A/AAAA records of `host` from a DNS answer.
void AddressesFromAnswer(const std::vector<unsigned char>& answer,
                         const std::string& host, int port,
                         std::vector<Endpoint>* out) {
  ns_msg msg;
  if (ns_initparse(answer.data(), static_cast<int>(answer.size()), &msg) < 0) {
    return;
  }
  int count = ns_msg_count(msg, ns_s_an);
  for (int i = 0; i < count; ++i) {
    ns_rr rr;
    if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) return;
    if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4) {
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      memcpy(&sin.sin_addr, ns_rr_rdata(rr), 4);
      AddEndpoint(host, reinterpret_cast<sockaddr*>(&sin), sizeof(sin), port,
                  out);
    } else if (ns_rr_type(rr) == ns_t_aaaa && ns_rr_rdlen(rr) == 16) {
      sockaddr_in6 sin6{};
      sin6.sin6_family = AF_INET6;
      memcpy(&sin6.sin6_addr, ns_rr_rdata(rr), 16);
      AddEndpoint(host, reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6), port,
                  out);
    }
  }
}

// Addresses of `host`: a literal, or A/AAAA through getaddrinfo (or through
// the configured DNS servers when there are any). kTempFail or kNotFound.
farm::Status LookupAddresses(const std::string& host, int port,
                             const ResolverOptions& options,
                             ResolverState& resolver,
                             std::vector<Endpoint>* out) {
  sockaddr_in sin{};
  sockaddr_in6 sin6{};
  if (inet_pton(AF_INET, host.c_str(), &sin.sin_addr) == 1) {
    sin.sin_family = AF_INET;
    AddEndpoint(host, reinterpret_cast<sockaddr*>(&sin), sizeof(sin), port,
                out);
    return farm::Status::Ok();
  }
  std::string literal = host;
  if (literal.rfind("IPv6:", 0) == 0) literal = literal.substr(5);
  if (inet_pton(AF_INET6, literal.c_str(), &sin6.sin6_addr) == 1) {
    sin6.sin6_family = AF_INET6;
    AddEndpoint(host, reinterpret_cast<sockaddr*>(&sin6), sizeof(sin6), port,
                out);
    return farm::Status::Ok();
  }
  size_t before = out->size();
  if (!options.dns_servers.empty()) {
    bool again = false;
    std::string error;
    for (int type : {ns_t_a, ns_t_aaaa}) {
      QueryOutcome q = Query(resolver, host, type);
      if (q.kind == QueryOutcome::kAnswer) {
        AddressesFromAnswer(q.answer, host, port, out);
      } else {
        again |= q.kind == QueryOutcome::kTryAgain;
        error = q.error;
      }
    }
    if (out->size() > before) return farm::Status::Ok();
    return again ? farm::Status::TempFail(error)
                 : farm::Status::NotFound(error);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* list = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    std::string error =
        "Name service error for name=" + host + " type=A: " + gai_strerror(rc);
    if (rc == EAI_NONAME || rc == EAI_NODATA) {
      return farm::Status::NotFound(error);
    }
    return farm::Status::TempFail(error);
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> owner(list, freeaddrinfo);
  for (addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) {
      AddEndpoint(host, ai->ai_addr, ai->ai_addrlen, port, out);
    }
  }
  if (out->size() == before) {
    return farm::Status::NotFound("no address for " + host);
  }
  return farm::Status::Ok();
}

Resolution Fail(farm::Status status, std::string dsn) {
  Resolution r;
  r.status = std::move(status);
  r.dsn = std::move(dsn);
  return r;
}

}  // namespace

farm::StatusOr<Nexthop> ParseNexthop(std::string_view text) {
  Nexthop hop;
  std::string_view rest = text;
  if (!rest.empty() && rest[0] == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return farm::Status::Invalid("nexthop \"" + std::string(text) +
                                   "\" lacks \"]\"");
    }
    hop.host = std::string(rest.substr(1, close - 1));
    hop.skip_mx = true;
    rest = rest.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') {
        return farm::Status::Invalid("nexthop \"" + std::string(text) +
                                     "\": junk after \"]\"");
      }
      auto port = ParsePort(rest.substr(1));
      if (!port.ok()) return port.status();
      hop.port = *port;
    }
  } else {
    size_t colon = rest.rfind(':');
    // More than one colon without brackets is an IPv6 address, not host:port.
    if (colon != std::string_view::npos && rest.find(':') == colon) {
      auto port = ParsePort(rest.substr(colon + 1));
      if (!port.ok()) return port.status();
      hop.port = *port;
      rest = rest.substr(0, colon);
    }
    hop.host = std::string(rest);
  }
  while (!hop.host.empty() && hop.host.back() == '.') hop.host.pop_back();
  if (hop.host.empty()) {
    return farm::Status::Invalid("nexthop \"" + std::string(text) +
                                 "\" has no host");
  }
  return hop;
}

farm::StatusOr<std::vector<MxRecord>> ParseMxAnswer(const unsigned char* msg,
                                                    int size) {
  ns_msg handle;
  if (ns_initparse(msg, size, &handle) < 0) {
    return farm::Status::Invalid("malformed DNS response");
  }
  std::vector<MxRecord> records;
  int count = ns_msg_count(handle, ns_s_an);
  for (int i = 0; i < count; ++i) {
    ns_rr rr;
    if (ns_parserr(&handle, ns_s_an, i, &rr) < 0) {
      return farm::Status::Invalid("malformed DNS answer record " +
                                   std::to_string(i));
    }
    if (ns_rr_type(rr) != ns_t_mx || ns_rr_class(rr) != ns_c_in) continue;
    if (ns_rr_rdlen(rr) < 3) {
      return farm::Status::Invalid("short MX record");
    }
    const unsigned char* rdata = ns_rr_rdata(rr);
    MxRecord record;
    record.preference = static_cast<uint16_t>(ns_get16(rdata));
    char name[NS_MAXDNAME];
    if (dn_expand(ns_msg_base(handle), ns_msg_end(handle), rdata + 2, name,
                  sizeof(name)) < 0) {
      return farm::Status::Invalid("malformed MX host name");
    }
    record.host = name;
    while (!record.host.empty() && record.host.back() == '.') {
      record.host.pop_back();
    }
    // Skipped like a record of another type, as Postfix skips an MX with a
    // malformed host name.
    if (!IsHostName(record.host)) continue;
    records.push_back(std::move(record));
  }
  return records;
}

void OrderMx(std::vector<MxRecord>* records, std::mt19937* rng) {
  std::shuffle(records->begin(), records->end(), *rng);
  std::stable_sort(records->begin(), records->end(),
                   [](const MxRecord& a, const MxRecord& b) {
                     return a.preference < b.preference;
                   });
}

bool IsNullMx(const std::vector<MxRecord>& records) {
  return records.size() == 1 && records[0].preference == 0 &&
         records[0].host.empty();
}

std::string Endpoint::Describe() const {
  return host + "[" + address_text + "]:" + std::to_string(port);
}

Resolution Resolve(const Nexthop& nexthop, const ResolverOptions& options,
                   std::mt19937* rng) {
  int port = nexthop.port != 0 ? nexthop.port : options.default_port;
  ResolverState resolver(options);
  Resolution result;
  if (nexthop.skip_mx) {
    farm::Status s = LookupAddresses(nexthop.host, port, options, resolver,
                                     &result.endpoints);
    // A configured relay host that does not resolve is a configuration
    // problem, not the recipient's: defer.
    if (!s.ok()) return Fail(farm::Status::TempFail(s.message()), "4.4.3");
    return result;
  }
  QueryOutcome mx = Query(resolver, nexthop.host, ns_t_mx);
  if (mx.kind == QueryOutcome::kNoSuchDomain) {
    return Fail(
        farm::Status::Invalid("Host or domain name not found. " + mx.error),
        "5.1.2");
  }
  if (mx.kind == QueryOutcome::kTryAgain) {
    return Fail(farm::Status::TempFail(mx.error), "4.4.3");
  }
  std::vector<MxRecord> records;
  if (mx.kind == QueryOutcome::kAnswer) {
    auto parsed =
        ParseMxAnswer(mx.answer.data(), static_cast<int>(mx.answer.size()));
    if (!parsed.ok()) {
      return Fail(
          farm::Status::TempFail(parsed.status().message() +
                                 " for name=" + nexthop.host + " type=MX"),
          "4.4.3");
    }
    records = std::move(*parsed);
  }
  if (IsNullMx(records)) {
    return Fail(farm::Status::Invalid("Domain " + nexthop.host +
                                      " does not accept mail (null MX)"),
                "5.1.10");
  }
  if (records.empty()) {
    // RFC 5321 5.1: no MX records; the domain itself is the implicit MX.
    farm::Status s = LookupAddresses(nexthop.host, port, options, resolver,
                                     &result.endpoints);
    if (s.code() == farm::Status::Code::kNotFound) {
      return Fail(farm::Status::Invalid("Host or domain name not found. " +
                                        s.message()),
                  "5.1.2");
    }
    if (!s.ok()) return Fail(farm::Status::TempFail(s.message()), "4.4.3");
    return result;
  }
  OrderMx(&records, rng);
  farm::Status last;
  for (const MxRecord& record : records) {
    if (record.host.empty()) continue;  // a "." among real MX records
    farm::Status s = LookupAddresses(record.host, port, options, resolver,
                                     &result.endpoints);
    if (!s.ok()) last = s;
  }
  if (result.endpoints.empty()) {
    return Fail(farm::Status::TempFail("no usable MX host for " + nexthop.host +
                                       ": " + last.message()),
                "4.4.3");
  }
  return result;
}

}  // namespace transport
