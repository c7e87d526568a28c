// routing_table.h: the router's domain -> (channel, nexthop) table, built from
// RoutingConfig.route. Used by RecipientResolver for every non-local domain.
// Matching order: exact domain, then the most specific ".parent" entry, then
// "*".
#ifndef MAILFARM_ROUTER_ROUTING_TABLE_H_
#define MAILFARM_ROUTER_ROUTING_TABLE_H_

#include <string>
#include <string_view>
#include <unordered_map>

#include "config.pb.h"
#include "farm/status.h"

namespace router {

// Where mail for a domain goes. nexthop "" means "the recipient's domain, by
// MX"; "[host]:port" means that host, no MX lookup.
struct RouteTarget {
  std::string channel;
  std::string nexthop;
  std::string matched;  // the table key that matched, for logs
};

// Lower-cased domain with one trailing dot removed ("Example.COM." ->
// "example.com").
std::string NormalizeDomain(std::string_view domain);

// Checks a nexthop's syntax: "", "host", "host:port", "[host]", "[host]:port".
farm::Status ValidateNexthop(std::string_view nexthop);

// Immutable after Build; safe to share between threads.
class RoutingTable {
 public:
  // Fails (naming the route's position) on an empty domain or channel, a
  // duplicate domain, or a malformed nexthop.
  static farm::StatusOr<RoutingTable> Build(
      const mailfarm::config::RoutingConfig& config);

  // The route for `domain` (any case), or nullptr when nothing matches and no
  // "*" route exists. The pointer lives as long as the table.
  const RouteTarget* Lookup(std::string_view domain) const;

  size_t size() const {
    return exact_.size() + parents_.size() + (has_default_ ? 1 : 0);
  }

 private:
  std::unordered_map<std::string, RouteTarget> exact_;  // "example.com"
  std::unordered_map<std::string, RouteTarget>
      parents_;  // "example.com" for ".example.com"
  RouteTarget default_;
  bool has_default_ = false;
};

}  // namespace router

#endif  // MAILFARM_ROUTER_ROUTING_TABLE_H_
