// Pieces shared by the store's server and client: the frame format (4-byte big-endian length +
// protobuf body), socket tuning and address formatting.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include <boost/asio/ip/tcp.hpp>

namespace google::protobuf {
class MessageLite;
}

namespace ringfuse::rendezvous::framing {

inline constexpr std::size_t kHeaderBytes = 4;
/// Larger frames are refused: rendezvous values are addresses and small blobs, so anything
/// this big is garbage (an HTTP request's "GET " reads as ~1.2 GB) or a misuse.
inline constexpr std::uint32_t kMaxFrameBytes = 64u << 20;

/// Ceiling on any wait, so a caller's "forever" (milliseconds::max()) cannot overflow a
/// steady_clock time point or a nanosecond conversion.
inline constexpr std::chrono::milliseconds kMaxWait = std::chrono::hours(24 * 30);

using Header = std::array<unsigned char, kHeaderBytes>;

/// Serializes `message` as one frame (header + body). The caller checks the size limit first.
std::string encode(const google::protobuf::MessageLite& message);

std::uint32_t decode_length(const Header& header);

/// TCP_NODELAY (requests are small and latency-bound), plus keepalive and TCP_USER_TIMEOUT so
/// a peer that vanished without closing becomes an error in seconds instead of ~15 minutes.
/// Best effort: an option the platform refuses is not worth failing the connection for.
void tune_socket(boost::asio::ip::tcp::socket& socket);

/// "host:port", with IPv6 addresses in brackets.
std::string to_string(const boost::asio::ip::tcp::endpoint& endpoint);
std::string address_string(const std::string& host, std::uint16_t port);

/// "30 s", "0.25 s": how long a timeout was, for messages.
std::string seconds_string(std::chrono::milliseconds duration);

}  // namespace ringfuse::rendezvous::framing
