#include "core/host_address.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <memory>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ringfuse::core {
namespace {

bool is_loopback(in_addr address) { return (ntohl(address.s_addr) >> 24) == 127; }

std::vector<in_addr> interface_addresses() {
  std::vector<in_addr> addresses;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return addresses;
  const std::unique_ptr<ifaddrs, decltype(&::freeifaddrs)> owner(list, &::freeifaddrs);
  for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr != nullptr && entry->ifa_addr->sa_family == AF_INET) {
      addresses.push_back(reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr);
    }
  }
  return addresses;
}

}  // namespace

std::string ipv4_text(in_addr address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address, text, sizeof(text));
  return text;
}

bool is_loopback_ipv4(const std::string& host) {
  in_addr address{};
  return ::inet_pton(AF_INET, host.c_str(), &address) == 1 && is_loopback(address);
}

Ipv4Resolution resolve_ipv4(const std::string& host) {
  Ipv4Resolution resolution;
  in_addr literal{};
  if (::inet_pton(AF_INET, host.c_str(), &literal) == 1) {
    resolution.addresses.push_back(literal);
    return resolution;
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &found);
  if (rc != 0 || found == nullptr) {
    resolution.problem = rc != 0 ? ::gai_strerror(rc) : "no address";
    return resolution;
  }
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owner(found, &::freeaddrinfo);
  for (const addrinfo* entry = found; entry != nullptr; entry = entry->ai_next) {
    resolution.addresses.push_back(reinterpret_cast<const sockaddr_in*>(entry->ai_addr)->sin_addr);
  }
  return resolution;
}

HostAddressCheck check_this_host_address(const std::string& host) {
  HostAddressCheck check;
  in6_addr ipv6{};
  if (host.empty()) {
    check.problem = "it is empty";
    return check;
  }
  if (::inet_pton(AF_INET6, host.c_str(), &ipv6) == 1) {
    check.problem = "IPv6 addresses are not supported (the mesh speaks IPv4)";
    return check;
  }
  const auto resolution = resolve_ipv4(host);
  if (resolution.addresses.empty()) {
    check.problem =
        fmt::format("'{}' does not resolve to an IPv4 address ({})", host, resolution.problem);
    return check;
  }
  const std::vector<in_addr>& candidates = resolution.addresses;
  const auto here = interface_addresses();
  for (const in_addr candidate : candidates) {
    const bool assigned = std::any_of(here.begin(), here.end(), [&](in_addr a) {
      return a.s_addr == candidate.s_addr;
    });
    if (assigned || is_loopback(candidate)) {
      check.address = ipv4_text(candidate);
      return check;
    }
  }
  std::vector<std::string> named;
  for (const in_addr candidate : candidates) named.push_back(ipv4_text(candidate));
  std::vector<std::string> assigned;
  for (const in_addr a : here) assigned.push_back(ipv4_text(a));
  check.problem =
      fmt::format("{} {} not assigned to any interface of this host (its addresses: {})",
                  fmt::join(named, ", "), named.size() == 1 ? "is" : "are",
                  fmt::join(assigned, ", "));
  return check;
}

}  // namespace ringfuse::core
