// routing_table.cc: builds and searches the domain routing table (see
// routing_table.h).
#include "router/routing_table.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace router {
namespace {

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
         c == '_';
}

bool ValidPort(std::string_view port) {
  unsigned value = 0;
  auto [end, ec] =
      std::from_chars(port.data(), port.data() + port.size(), value);
  return ec == std::errc() && end == port.data() + port.size() && value >= 1 &&
         value <= 65535;
}

}  // namespace

std::string NormalizeDomain(std::string_view domain) {
  std::string out(domain);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

farm::Status ValidateNexthop(std::string_view nexthop) {
  if (nexthop.empty()) return farm::Status::Ok();
  std::string_view host = nexthop;
  std::string_view port;
  if (nexthop.front() == '[') {
    size_t close = nexthop.find(']');
    if (close == std::string_view::npos || close == 1) {
      return farm::Status::Invalid("nexthop \"" + std::string(nexthop) +
                                   "\": expected [host] or [host]:port");
    }
    host = nexthop.substr(1, close - 1);
    std::string_view rest = nexthop.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return farm::Status::Invalid("nexthop \"" + std::string(nexthop) +
                                     "\": unexpected text after ]");
      }
      port = rest.substr(1);
      if (!ValidPort(port)) {
        return farm::Status::Invalid("nexthop \"" + std::string(nexthop) +
                                     "\": bad port");
      }
    }
    // A bracketed host may be an IPv6 literal: allow ':' inside.
    for (char c : host) {
      if (!IsHostChar(c) && c != ':') {
        return farm::Status::Invalid("nexthop \"" + std::string(nexthop) +
                                     "\": bad character in host");
      }
    }
    return farm::Status::Ok();
  }
  size_t colon = nexthop.find(':');
  if (colon != std::string_view::npos) {
    host = nexthop.substr(0, colon);
    if (!ValidPort(nexthop.substr(colon + 1))) {
      return farm::Status::Invalid("nexthop \"" + std::string(nexthop) +
                                   "\": bad port");
    }
  }
  if (host.empty() || !std::all_of(host.begin(), host.end(), IsHostChar)) {
    return farm::Status::Invalid("nexthop \"" + std::string(nexthop) +
                                 "\": bad host name");
  }
  return farm::Status::Ok();
}

farm::StatusOr<RoutingTable> RoutingTable::Build(
    const mailfarm::config::RoutingConfig& config) {
  RoutingTable table;
  for (int i = 0; i < config.route_size(); ++i) {
    const auto& route = config.route(i);
    const std::string where = "routing.route[" + std::to_string(i) +
                              "] (domain \"" + route.domain() + "\"): ";
    std::string key = NormalizeDomain(route.domain());
    if (key.empty() || key == ".")
      return farm::Status::Invalid(where + "empty domain");
    if (route.channel().empty())
      return farm::Status::Invalid(where + "no channel");
    farm::Status nexthop_ok = ValidateNexthop(route.nexthop());
    if (!nexthop_ok.ok())
      return farm::Status::Invalid(where + nexthop_ok.message());
    RouteTarget target{route.channel(), route.nexthop(), route.domain()};
    bool inserted = true;
    if (key == "*") {
      inserted = !table.has_default_;
      table.default_ = std::move(target);
      table.has_default_ = true;
    } else if (key.front() == '.') {
      inserted =
          table.parents_.emplace(key.substr(1), std::move(target)).second;
    } else {
      inserted = table.exact_.emplace(key, std::move(target)).second;
    }
    if (!inserted) return farm::Status::Invalid(where + "duplicate domain");
  }
  return table;
}

const RouteTarget* RoutingTable::Lookup(std::string_view domain) const {
  std::string key = NormalizeDomain(domain);
  if (auto it = exact_.find(key); it != exact_.end()) return &it->second;
  // Walk up the labels: "a.b.example.com" tries b.example.com, example.com,
  // com, so the most specific ".parent" entry wins.
  for (size_t dot = key.find('.'); dot != std::string::npos;
       dot = key.find('.', dot + 1)) {
    if (auto it = parents_.find(key.substr(dot + 1)); it != parents_.end())
      return &it->second;
  }
  return has_default_ ? &default_ : nullptr;
}

}  // namespace router
