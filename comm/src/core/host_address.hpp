// RINGFUSE_HOST_ADDR must be an address peers can reach this rank at: an IPv4 address
// assigned to one of this host's interfaces (any 127.0.0.0/8 address counts: loopback
// answers on all of them), or a name that resolves to one.
#pragma once

#include <netinet/in.h>

#include <optional>
#include <string>
#include <vector>

namespace ringfuse::core {

struct Ipv4Resolution {
  std::vector<in_addr> addresses;  // in the resolver's order; empty when `host` resolves to none
  std::string problem;             // then: why not (getaddrinfo's reason), for an error message
};

/// The IPv4 addresses `host` stands for: itself when it is an IPv4 literal, else what
/// getaddrinfo finds for it (the one IPv4 resolution of the library: store host, host address).
Ipv4Resolution resolve_ipv4(const std::string& host);

/// `address` in dotted-quad form.
std::string ipv4_text(in_addr address);

/// Whether `host` is an IPv4 literal in 127.0.0.0/8 (loopback answers on all of them).
bool is_loopback_ipv4(const std::string& host);

struct HostAddressCheck {
  std::optional<std::string> address;  // the IPv4 address, as text, when `host` is this host's
  std::string problem;                 // otherwise: what is wrong, for an error message
};

/// Resolves `host` (an IPv4 literal or a name, through getaddrinfo) and checks with
/// getifaddrs that the address is assigned here. IPv6 is refused: the mesh speaks IPv4.
HostAddressCheck check_this_host_address(const std::string& host);

}  // namespace ringfuse::core
