// RINGFUSE_HOST_ADDR must be an address peers can reach this rank at: an IPv4 address
// assigned to one of this host's interfaces (any 127.0.0.0/8 address counts: loopback
// answers on all of them), or a name that resolves to one.
#pragma once

#include <optional>
#include <string>

namespace ringfuse::core {

struct HostAddressCheck {
  std::optional<std::string> address;  // the IPv4 address, as text, when `host` is this host's
  std::string problem;                 // otherwise: what is wrong, for an error message
};

/// Resolves `host` (an IPv4 literal or a name, through getaddrinfo) and checks with
/// getifaddrs that the address is assigned here. IPv6 is refused: the mesh speaks IPv4.
HostAddressCheck check_this_host_address(const std::string& host);

}  // namespace ringfuse::core
