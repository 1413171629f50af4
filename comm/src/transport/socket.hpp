// A move-only owner of a socket file descriptor and the socket options every Ringfuse
// connection uses.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace ringfuse::transport {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() { reset(); }
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

/// TCP_NODELAY, SO_KEEPALIVE with short probes and TCP_USER_TIMEOUT, so a lost peer becomes an
/// error in seconds rather than the kernel's ~15 minutes of retransmissions (DESIGN.md §6).
void configure_data_socket(int fd, std::chrono::milliseconds user_timeout);
void set_nonblocking(int fd, bool nonblocking);

/// Listens on host:0 and returns the socket and its chosen port.
std::pair<Socket, std::uint16_t> listen_on(const std::string& host, int backlog);

/// Connects to host:port, retrying refused attempts until `deadline`. With `source` (an IPv4
/// address of this host), the connection leaves from it, so the peer sees the address this
/// rank advertises rather than whichever the kernel picks (127.0.0.1 for a loopback alias, or
/// another interface's on a multi-homed host); a `source` that is not a local address is
/// ignored.
Socket connect_with_retry(const std::string& host, std::uint16_t port,
                          std::chrono::steady_clock::time_point deadline,
                          const std::string& source = {});

/// Reads or writes exactly `bytes` before `deadline` on a non-blocking socket; returns false
/// on timeout, throws std::system_error on a socket error or std::runtime_error on EOF.
bool write_all(int fd, const void* buf, std::size_t bytes,
               std::chrono::steady_clock::time_point deadline);
bool read_all(int fd, void* buf, std::size_t bytes,
              std::chrono::steady_clock::time_point deadline);

/// Milliseconds from now until `deadline`, clamped to [0, INT_MAX] for poll().
int poll_timeout_ms(std::chrono::steady_clock::time_point deadline);

}  // namespace ringfuse::transport
