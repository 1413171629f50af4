#include "transport/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>

#include <fmt/format.h>

namespace ringfuse::transport {
namespace {

using Clock = std::chrono::steady_clock;

std::system_error system_error(const std::string& what) {
  return std::system_error(errno, std::generic_category(), what);
}

sockaddr_in make_address(const std::string& host, std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    throw std::invalid_argument(fmt::format("'{}' is not an IPv4 address", host));
  }
  return addr;
}

void set_int_option(int fd, int level, int name, int value) {
  // Best effort: an option the kernel lacks must not stop a job.
  (void)::setsockopt(fd, level, name, &value, sizeof(value));
}

bool is_loopback(const sockaddr_in& address) {
  return (ntohl(address.sin_addr.s_addr) >> 24) == 127;
}

/// Whether the connection never leaves this host: the peer is a loopback address, or the
/// same address as this end (the kernel routes that over the loopback device too).
bool within_this_host(int fd) {
  sockaddr_in local{};
  sockaddr_in peer{};
  socklen_t local_len = sizeof(local);
  socklen_t peer_len = sizeof(peer);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0 ||
      local.sin_family != AF_INET || peer.sin_family != AF_INET) {
    return false;
  }
  return is_loopback(peer) || peer.sin_addr.s_addr == local.sin_addr.s_addr;
}

/// A connection inside this host has no network to share, so it gets a congestion control
/// that does not pace. A host that defaults to BBR (this project's machine image does) paces
/// every flow at BBR's estimate of the path's rate; on loopback one direction's estimate
/// settled at 40-62 Gbit/s in 24 of 105 runs (260-520 in the others), and the 1 MiB
/// all-reduce at N = 2 then took 500-580 us instead of 240-265, with the pacing's softirqs
/// on one rank's CPU (perf/RESULTS.md, issue 17, sixteenth session). Set before connecting
/// or listening where the address is a loopback one, so BBR never starts; on a connection
/// switched after it was made the kernel keeps pacing, at 1.2-2x the new control's window
/// per round trip, which measured as fast. Best effort: cubic, else reno (built into every
/// kernel), else whatever the socket has.
void use_unpaced_congestion_control(int fd) {
  for (const std::string_view name : {std::string_view("cubic"), std::string_view("reno")}) {
    if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name.data(),
                     static_cast<socklen_t>(name.size())) == 0) {
      return;
    }
  }
}

}  // namespace

void Socket::reset() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void configure_data_socket(int fd, std::chrono::milliseconds user_timeout) {
  set_int_option(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  set_int_option(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, 2);
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, 1);
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, 3);
  set_int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, static_cast<int>(user_timeout.count()));
  // Connections between hosts keep the host's choice.
  if (within_this_host(fd)) use_unpaced_congestion_control(fd);
}

void set_nonblocking(int fd, bool nonblocking) {
  const int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0) throw system_error("fcntl(F_GETFL)");
  const int wanted = nonblocking ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, wanted) < 0) throw system_error("fcntl(F_SETFL)");
}

int poll_timeout_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return left.count() > INT_MAX ? INT_MAX : static_cast<int>(left.count()) + 1;
}

std::pair<Socket, std::uint16_t> listen_on(const std::string& host, int backlog) {
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket.valid()) throw system_error("socket()");
  set_int_option(socket.fd(), SOL_SOCKET, SO_REUSEADDR, 1);
  sockaddr_in addr = make_address(host, 0);
  // Accepted connections keep the listener's congestion control.
  if (is_loopback(addr)) use_unpaced_congestion_control(socket.fd());
  if (::bind(socket.fd(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    throw system_error(fmt::format("bind({}:0)", host));
  }
  if (::listen(socket.fd(), backlog) < 0) throw system_error("listen()");
  socklen_t len = sizeof(addr);
  if (::getsockname(socket.fd(), reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    throw system_error("getsockname()");
  }
  set_nonblocking(socket.fd(), true);
  return {std::move(socket), ntohs(addr.sin_port)};
}

Socket connect_with_retry(const std::string& host, std::uint16_t port, Clock::time_point deadline,
                          const std::string& source) {
  const sockaddr_in addr = make_address(host, port);
  std::optional<sockaddr_in> from;
  if (!source.empty() && source != "0.0.0.0") {
    try {
      from = make_address(source, 0);
    } catch (const std::invalid_argument&) {
      // Not an IPv4 address: the kernel chooses, as without a source.
    }
  }
  auto backoff = std::chrono::milliseconds(10);
  while (true) {
    Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!socket.valid()) throw system_error("socket()");
    set_nonblocking(socket.fd(), true);
    if (from && ::bind(socket.fd(), reinterpret_cast<const sockaddr*>(&*from), sizeof(*from)) != 0) {
      from.reset();  // not an address of this host (NAT, a typo): let the kernel choose
      socket = Socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (!socket.valid()) throw system_error("socket()");
      set_nonblocking(socket.fd(), true);
    }
    if (is_loopback(addr)) use_unpaced_congestion_control(socket.fd());
    int rc = ::connect(socket.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
    int error = rc == 0 ? 0 : errno;
    if (error == EINPROGRESS) {
      pollfd pfd{socket.fd(), POLLOUT, 0};
      const int ready = ::poll(&pfd, 1, poll_timeout_ms(deadline));
      if (ready < 0 && errno != EINTR) throw system_error("poll() during connect");
      if (ready <= 0) {
        error = ETIMEDOUT;
      } else {
        socklen_t len = sizeof(error);
        ::getsockopt(socket.fd(), SOL_SOCKET, SO_ERROR, &error, &len);
      }
    }
    if (error == 0) return socket;
    const bool retryable = error == ECONNREFUSED || error == ETIMEDOUT || error == ECONNRESET ||
                           error == EHOSTUNREACH || error == ENETUNREACH || error == EAGAIN;
    if (!retryable || Clock::now() + backoff >= deadline) {
      errno = error;
      throw system_error(fmt::format("connect({}:{})", host, port));
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(500));
  }
}

bool write_all(int fd, const void* buf, std::size_t bytes, Clock::time_point deadline) {
  const auto* data = static_cast<const std::byte*>(buf);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::send(fd, data + done, bytes - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      throw system_error("send()");
    }
    pollfd pfd{fd, POLLOUT, 0};
    if (::poll(&pfd, 1, poll_timeout_ms(deadline)) == 0) return false;
  }
  return true;
}

bool read_all(int fd, void* buf, std::size_t bytes, Clock::time_point deadline) {
  auto* data = static_cast<std::byte*>(buf);
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::recv(fd, data + done, bytes - done, 0);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) throw std::runtime_error("connection closed by peer");
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) throw system_error("recv()");
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, poll_timeout_ms(deadline)) == 0) return false;
  }
  return true;
}

}  // namespace ringfuse::transport
