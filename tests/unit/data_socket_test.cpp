// configure_data_socket on connections inside this host: whatever congestion control a
// connection starts with (the host's default, BBR on many images), it ends with one that does
// not pace, at both ends. Real sockets on loopback.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <string>

#include "transport/socket.hpp"

namespace {

using ringfuse::transport::configure_data_socket;
using ringfuse::transport::Socket;

std::string congestion_control(int fd) {
  char name[32] = {};
  socklen_t length = sizeof(name);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &length) != 0) return "?";
  return std::string(name);
}

bool set_congestion_control(int fd, const std::string& name) {
  return ::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                      static_cast<socklen_t>(name.size())) == 0;
}

TEST(DataSocket, AConnectionWithinThisHostDoesNotPace) {
  auto [listener, port] = ringfuse::transport::listen_on("127.0.0.1", 4);
  Socket dialer(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(dialer.valid());
  // BBR paces every flow; the listener's side gets the host's default.
  if (!set_congestion_control(dialer.fd(), "bbr")) {
    GTEST_SKIP() << "this kernel has no BBR to start the connection with";
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(dialer.fd(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)),
            0);
  pollfd ready{listener.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&ready, 1, 10'000), 1) << "the connection was not accepted within 10 s";
  Socket accepted(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted.valid());
  ASSERT_EQ(congestion_control(dialer.fd()), "bbr");

  configure_data_socket(dialer.fd(), std::chrono::milliseconds(10'000));
  configure_data_socket(accepted.fd(), std::chrono::milliseconds(10'000));

  for (const int fd : {dialer.fd(), accepted.fd()}) {
    const std::string name = congestion_control(fd);
    EXPECT_TRUE(name == "cubic" || name == "reno") << "congestion control " << name;
  }
}

}  // namespace
