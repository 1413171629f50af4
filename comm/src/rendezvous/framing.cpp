#include "rendezvous/framing.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <google/protobuf/message_lite.h>

#include <boost/asio/socket_base.hpp>
#include <fmt/format.h>

namespace ringfuse::rendezvous::framing {

namespace {

// A dead peer is noticed after roughly idle + interval * count seconds of silence, and unacked
// data fails the connection after kUserTimeoutMs (the design's measured ~2 s vs > 40 s).
constexpr int kUserTimeoutMs = 10000;
constexpr int kKeepIdleS = 5;
constexpr int kKeepIntervalS = 2;
constexpr int kKeepCount = 3;

void set_int_option(int fd, int level, int name, int value) {
  // Ignoring failure is deliberate: see tune_socket().
  (void)::setsockopt(fd, level, name, &value, sizeof(value));
}

}  // namespace

std::string encode(const google::protobuf::MessageLite& message) {
  const auto body_size = message.ByteSizeLong();
  std::string frame(kHeaderBytes + body_size, '\0');
  const auto size = static_cast<std::uint32_t>(body_size);
  frame[0] = static_cast<char>((size >> 24) & 0xff);
  frame[1] = static_cast<char>((size >> 16) & 0xff);
  frame[2] = static_cast<char>((size >> 8) & 0xff);
  frame[3] = static_cast<char>(size & 0xff);
  message.SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(frame.data()) +
                                          kHeaderBytes);
  return frame;
}

std::uint32_t decode_length(const Header& header) {
  return (std::uint32_t{header[0]} << 24) | (std::uint32_t{header[1]} << 16) |
         (std::uint32_t{header[2]} << 8) | std::uint32_t{header[3]};
}

void tune_socket(boost::asio::ip::tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
  socket.set_option(boost::asio::socket_base::keep_alive(true), ignored);
  const int fd = socket.native_handle();
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPIDLE, kKeepIdleS);
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPINTVL, kKeepIntervalS);
  set_int_option(fd, IPPROTO_TCP, TCP_KEEPCNT, kKeepCount);
  set_int_option(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, kUserTimeoutMs);
}

std::string to_string(const boost::asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

std::string address_string(const std::string& host, std::uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

std::string seconds_string(std::chrono::milliseconds duration) {
  return fmt::format("{:g} s", static_cast<double>(duration.count()) / 1000.0);
}

}  // namespace ringfuse::rendezvous::framing
