// A-record lookups through c-ares: unlike getaddrinfo it honours a deadline and can be pointed
// at a specific server (tests use a dnsmasq on a loopback port; pods use /etc/resolv.conf).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace ringfuse::launcher {

struct DnsAnswer {
  enum class Status { ok, nxdomain, no_data, failed };
  Status status = Status::failed;
  std::vector<std::string> addresses;  // IPv4, sorted numerically, unique
  std::string detail;                  // c-ares' words for a failure

  /// "NXDOMAIN", "no A records", "timeout", ...
  std::string describe() const;
};

class DnsResolver {
 public:
  /// `server` is "IP:PORT" (or "IP") to ask instead of the system's resolvers. Every lookup
  /// ends within `query_timeout`. Throws Error(invalid_argument) for a bad server.
  DnsResolver(std::optional<std::string> server, std::chrono::milliseconds query_timeout);
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  /// Looks up the A records of `name` (queried fully qualified: a trailing dot is added).
  DnsAnswer lookup_a(const std::string& name);

 private:
  struct Channel;
  Channel* channel_;
  std::chrono::milliseconds query_timeout_;
};

/// Sorts IPv4 address strings by numeric value ("127.0.0.10" after "127.0.0.9"), unique.
void sort_addresses(std::vector<std::string>& addresses);

}  // namespace ringfuse::launcher
