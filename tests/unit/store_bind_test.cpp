// Where rank 0 serves the rendezvous store under torchrun-style variables (issue #22, item 5):
// on the loopback address when MASTER_ADDR is loopback, so nothing off this host can reach it,
// and on every address when ranks elsewhere must. Two real Contexts (rank 0 hosting the store,
// rank 1 connecting) in one process, over TCP on this host.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "free_port.hpp"
#include "ringfuse/ringfuse.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::free_port;

// An IPv4 address of this host outside 127.0.0.0/8, if it has one.
std::optional<std::string> non_loopback_address() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (const ifaddrs* entry = list; entry != nullptr && !found; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
    if ((entry->ifa_flags & IFF_UP) == 0 || (entry->ifa_flags & IFF_LOOPBACK) != 0) continue;
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(entry->ifa_addr)->sin_addr, text,
                sizeof(text));
    found = text;
  }
  ::freeifaddrs(list);
  return found;
}

// The local address (as /proc/net/tcp writes it: hex, host byte order) of the socket
// listening on `port`, or "" when none is.
std::string listening_address(std::uint16_t port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    const auto colon = local.find(':');
    if (state != "0A" || colon == std::string::npos) continue;  // 0A: LISTEN
    if (std::stoul(local.substr(colon + 1), nullptr, 16) == port) return local.substr(0, colon);
  }
  return {};
}

bool can_connect(const std::string& host, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  const bool connected = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return connected;
}

// A world of two described as torchrun describes it: rank 0 serves the store on MASTER_PORT.
std::unique_ptr<ringfuse::Context> torchrun_rank(int rank, const std::string& master_addr,
                                                 std::uint16_t master_port) {
  ringfuse::WorldSpec world;
  world.rank = rank;
  world.size = 2;
  world.store_host = master_addr;
  world.store_port = master_port;
  world.host_store = rank == 0;
  world.job_id = "store-bind-" + std::to_string(::getpid()) + "-" + std::to_string(master_port);
  world.job_secret = "store-bind-secret";
  world.source = "torchrun variables (test)";
  ringfuse::Options options;
  options.transport = ringfuse::TransportKind::tcp;
  options.connect_timeout = 20s;
  return ringfuse::init(world, options);
}

struct World {
  std::unique_ptr<ringfuse::Context> rank0;
  std::unique_ptr<ringfuse::Context> rank1;
};

World start_world(const std::string& master_addr, std::uint16_t port) {
  auto first = std::async(std::launch::async, [&] { return torchrun_rank(0, master_addr, port); });
  auto second = std::async(std::launch::async, [&] { return torchrun_rank(1, master_addr, port); });
  World world{first.get(), second.get()};
  // The world really works: a collective across both ranks.
  auto done = std::async(std::launch::async, [&] { world.rank1->barrier(); });
  world.rank0->barrier();
  done.get();
  return world;
}

TEST(TorchrunStoreBind, LoopbackMasterAddrKeepsTheStoreOffTheNetwork) {
  const std::uint16_t port = free_port(SOCK_STREAM);
  const World world = start_world("127.0.0.1", port);
  EXPECT_EQ(listening_address(port), "0100007F")
      << "the store must listen on 127.0.0.1 only (00000000 is 0.0.0.0: every address)";
  if (const auto outside = non_loopback_address()) {
    EXPECT_FALSE(can_connect(*outside, port))
        << "the store of a loopback-only world is reachable at " << *outside << ":" << port;
  }
  EXPECT_TRUE(can_connect("127.0.0.1", port));
}

TEST(TorchrunStoreBind, LocalhostMasterAddrIsLoopbackToo) {
  const std::uint16_t port = free_port(SOCK_STREAM);
  const World world = start_world("localhost", port);
  EXPECT_EQ(listening_address(port), "0100007F");
}

TEST(TorchrunStoreBind, NonLoopbackMasterAddrListensOnEveryAddress) {
  const auto outside = non_loopback_address();
  if (!outside) GTEST_SKIP() << "this host has no IPv4 address outside 127.0.0.0/8";
  const std::uint16_t port = free_port(SOCK_STREAM);
  const World world = start_world(*outside, port);
  // Ranks on other hosts reach it at MASTER_ADDR, which may be a Service address that is not
  // this host's own, so it listens on every address.
  EXPECT_EQ(listening_address(port), "00000000");
}

}  // namespace
