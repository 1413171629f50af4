// Fuzz target: the rendezvous store's wire input. Every input is first decoded in-process the
// way the server does (4-byte big-endian length, kMaxFrameBytes, wire::Request parse, an
// operation must be named) and round-tripped through framing::encode. The first byte then
// picks what a live TcpStoreServer (one per process, on a loopback port, job secret
// "fuzz-secret") is sent over a real socket:
//   0: nothing more (parse only — fastest)
//   1: the remaining bytes, raw, before authenticating (an outsider's garbage)
//   2: the hello/auth handshake done properly, then the remaining bytes raw
//   3: the handshake, then the remaining bytes as the body of one well-framed request (reaches
//      the server's dispatch of set/get/wait/add/remove/check with fuzzed fields)
// The server must answer or close, never crash; every 64 socket inputs a real TcpStoreClient
// checks that it still serves well-behaved clients.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/spdlog.h>

#include "rendezvous/auth.hpp"
#include "rendezvous/framing.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "store.pb.h"

namespace {

using namespace ringfuse::rendezvous;

constexpr const char* kSecret = "fuzz-secret";

TcpStoreServer& server() {
  static const auto instance = [] {
    spdlog::set_level(spdlog::level::off);  // every rejected input logs a warning
    return std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  }();
  return *instance;
}

class Raw {
 public:
  explicit Raw(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) __builtin_trap();
    timeval tv{10, 0};  // bounded (generous: fuzzing shares a loaded machine); a server that
                        // neither answers nor closes within it is a finding
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) __builtin_trap();
  }
  ~Raw() { ::close(fd_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  void send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const auto n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return;  // the server may close on us mid-way: fine
      done += static_cast<std::size_t>(n);
    }
  }
  bool read_exact(char* out, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const auto n = ::recv(fd_, out + done, size - done, 0);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  std::optional<wire::Response> read_response() {
    framing::Header header{};
    if (!read_exact(reinterpret_cast<char*>(header.data()), header.size())) return std::nullopt;
    const auto length = framing::decode_length(header);
    if (length > (1u << 20)) __builtin_trap();  // the server never sends that much here
    std::string body(length, '\0');
    if (!read_exact(body.data(), body.size())) return std::nullopt;
    wire::Response response;
    if (!response.ParseFromString(body)) __builtin_trap();  // the server's own output
    return response;
  }
  /// Half-closes and reads until the server closes: it must, within the receive timeout.
  void finish() {
    ::shutdown(fd_, SHUT_WR);
    char sink[4096];
    for (;;) {
      const auto n = ::recv(fd_, sink, sizeof sink, 0);
      if (n == 0) return;
      if (n < 0) {
        if (errno == ECONNRESET) return;
        __builtin_trap();  // timed out: the server kept a half-closed connection open
      }
    }
  }

 private:
  int fd_;
};

std::string frame(const wire::Request& request) { return framing::encode(request); }

void handshake(Raw& raw) {
  const auto client_nonce = auth::random_nonce();
  wire::Request hello;
  hello.set_id(1);
  hello.mutable_hello()->set_client_nonce(client_nonce);
  raw.send(frame(hello));
  const auto challenge = raw.read_response();
  if (!challenge || !challenge->has_challenge()) __builtin_trap();
  const auto& c = challenge->challenge();
  if (!auth::proofs_equal(c.server_proof(), auth::proof(kSecret, "store-server", client_nonce,
                                                         c.server_nonce()))) {
    __builtin_trap();
  }
  wire::Request auth_request;
  auth_request.set_id(2);
  auth_request.mutable_auth()->set_client_proof(
      auth::proof(kSecret, "store-client", c.server_nonce(), client_nonce));
  raw.send(frame(auth_request));
  const auto accepted = raw.read_response();
  if (!accepted || !accepted->has_auth()) __builtin_trap();
}

void parse_in_process(const std::string& bytes) {
  if (bytes.size() < framing::kHeaderBytes) return;
  framing::Header header{};
  for (std::size_t i = 0; i < header.size(); ++i) header[i] = static_cast<unsigned char>(bytes[i]);
  const auto length = framing::decode_length(header);
  if (length > framing::kMaxFrameBytes) return;  // the server rejects it unread
  const auto body = bytes.substr(framing::kHeaderBytes, length);
  wire::Request request;
  if (!request.ParseFromString(body) || request.op_case() == wire::Request::OP_NOT_SET) return;
  wire::Request again;
  const auto encoded = framing::encode(request);
  if (!again.ParseFromString(encoded.substr(framing::kHeaderBytes)) ||
      again.SerializeAsString() != request.SerializeAsString()) {
    __builtin_trap();
  }
}

void check_server_serves() {
  TcpStoreClient client("127.0.0.1", server().port(), std::chrono::seconds(5), kSecret);
  client.set("fuzz/health", "ok");
  if (client.get("fuzz/health", std::chrono::seconds(5)) != "ok") __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 4;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  parse_in_process(rest);
  if (mode == 0) return 0;

  static unsigned socket_inputs = 0;
  {
    Raw raw(server().port());
    if (mode >= 2) handshake(raw);
    if (mode == 3) {
      const auto length = static_cast<std::uint32_t>(rest.size());
      std::string framed{static_cast<char>(length >> 24), static_cast<char>(length >> 16),
                         static_cast<char>(length >> 8), static_cast<char>(length)};
      raw.send(framed + rest);
    } else {
      raw.send(rest);
    }
    raw.finish();
  }
  if (++socket_inputs % 64 == 0) check_server_serves();
  return 0;
}
