#include "free_port.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <random>

namespace ringfuse::testing {
namespace {

// The lowest port the kernel hands out on its own (32768 by default).
int ephemeral_low() {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 0;
  return range >> low ? low : 32768;
}

int ephemeral_port(int type) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

bool port_binds(int type, int port) {
  const int fd = ::socket(AF_INET, type, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return bound;
}

std::uint16_t free_port(int type, int span) {
  constexpr int kLowest = 10000;  // clear of the well-known and registered services tests meet
  const int high = ephemeral_low() - span;
  if (high > kLowest) {
    std::mt19937 pick(std::random_device{}());
    std::uniform_int_distribution<int> port_below(kLowest, high);
    for (int attempt = 0; attempt < 200; ++attempt) {
      const int port = port_below(pick);
      bool all_free = true;
      for (int i = 0; i < span && all_free; ++i) all_free = port_binds(type, port + i);
      if (all_free) return static_cast<std::uint16_t>(port);
    }
  }
  return static_cast<std::uint16_t>(ephemeral_port(type));  // a machine without such room
}

}  // namespace ringfuse::testing
