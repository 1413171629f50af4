#include "torch_master.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

struct PortRange {
  int low;
  int high;
};

// Ports below the ephemeral range, where services listen; the ephemeral range itself when the
// kernel leaves too little room below it.
PortRange candidate_ports() {
  PortRange ephemeral{32768, 60999};
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral.low >> ephemeral.high;
  constexpr int kLowest = 10000;
  if (ephemeral.low - 1 > kLowest + 1000) return {kLowest, ephemeral.low - 1};
  return {std::max(1024, ephemeral.low), std::min(65535, ephemeral.high)};
}

// Whether `port` can be bound in `family` right now; true too when the family is not
// available on this host (no IPv6).
bool bindable(int family, std::uint16_t port) {
  const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;
  bool ok = false;
  if (family == AF_INET6) {
    const int v6_only = 0;  // torch's TCPStore binds [::] for both families
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only, sizeof v6_only);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_any;
    address.sin6_port = htons(port);
    ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0 ||
         errno == EADDRNOTAVAIL;
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    address.sin_port = htons(port);
    ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  }
  ::close(fd);
  return ok;
}

}  // namespace

std::uint16_t free_port_for_rank_zero() {
  const PortRange range = candidate_ports();
  std::mt19937 draw{std::random_device{}()};
  std::uniform_int_distribution<int> pick(range.low, range.high);
  constexpr int kTries = 400;
  for (int attempt = 0; attempt < kTries; ++attempt) {
    const auto port = static_cast<std::uint16_t>(pick(draw));
    if (bindable(AF_INET, port) && bindable(AF_INET6, port)) return port;
  }
  throw Error(ErrorKind::system,
              "found no free TCP port for torch's MASTER_PORT in " + std::to_string(kTries) +
                  " tries between " + std::to_string(range.low) + " and " +
                  std::to_string(range.high) + ": is this host out of ports?");
}

}  // namespace ringfuse::launcher
