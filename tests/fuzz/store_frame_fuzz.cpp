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
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
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

// libFuzzer's -timeout=T arms ITIMER_REAL: SIGALRM every T/2+1 s (6 s with -timeout=10), with a
// handler installed without SA_RESTART. A blocking recv/send/connect interrupted by it fails with
// EINTR (for a socket with SO_RCVTIMEO/SO_SNDTIMEO even under SA_RESTART: signal(7)). Every
// blocking step here therefore waits with poll() against its own deadline and retries EINTR;
// only a server that really neither answers nor closes within kPatience is a finding.
constexpr auto kPatience = std::chrono::seconds(10);  // generous: fuzzing shares a loaded machine

/// Reports what the server did wrong (with errno for a failed call) and stops the fuzzer.
[[noreturn]] void finding(const char* what, int error = 0) {
  if (error != 0) {
    std::fprintf(stderr, "store_frame: %s: %s\n", what, std::strerror(error));
  } else {
    std::fprintf(stderr, "store_frame: %s\n", what);
  }
  __builtin_trap();
}

class Raw {
 public:
  explicit Raw(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    if (fd_ < 0) finding("socket() failed", errno);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // A connect interrupted by a signal goes on asynchronously (EINTR, then EALREADY/EISCONN):
    // wait for it to finish and read its outcome instead of calling connect again.
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (errno != EINTR && errno != EINPROGRESS) finding("connect to the store failed", errno);
      if (!wait_for(POLLOUT)) finding("connect to the store did not complete");
      int error = 0;
      socklen_t length = sizeof(error);
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error != 0) finding("connect to the store failed", error);
    }
  }
  ~Raw() { ::close(fd_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  void send(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      if (!wait_for(POLLOUT)) finding("the server neither read our bytes nor closed");
      const auto n = ::send(fd_, bytes.data() + done, bytes.size() - done,
                            MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) return;  // the server may close on us mid-way: fine
      done += static_cast<std::size_t>(n);
    }
  }
  /// Reads exactly `size` bytes; false when the server closed first.
  bool read_exact(char* out, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const auto n = receive(out + done, size - done);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  std::optional<wire::Response> read_response() {
    framing::Header header{};
    if (!read_exact(reinterpret_cast<char*>(header.data()), header.size())) return std::nullopt;
    const auto length = framing::decode_length(header);
    if (length > (1u << 20)) finding("the server sent a frame over 1 MiB");
    std::string body(length, '\0');
    if (!read_exact(body.data(), body.size())) return std::nullopt;
    wire::Response response;
    if (!response.ParseFromString(body)) finding("the server sent an unparsable response");
    return response;
  }
  /// Half-closes and reads until the server closes: it must, within kPatience.
  void finish() {
    ::shutdown(fd_, SHUT_WR);
    char sink[4096];
    while (receive(sink, sizeof sink) > 0) {
    }
  }

 private:
  /// One recv: > 0 bytes, 0 when the server closed (or reset) the connection. A server that
  /// sends nothing and does not close within kPatience is a finding.
  ssize_t receive(char* out, std::size_t size) {
    for (;;) {
      if (!wait_for(POLLIN)) finding("the server neither answered nor closed the connection");
      const auto n = ::recv(fd_, out, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == ECONNRESET) return 0;
      if (errno != EINTR && errno != EAGAIN) finding("recv failed", errno);
    }
  }
  /// Polls for `events` until kPatience has passed, retrying EINTR; true when ready (an error or
  /// hang-up counts as ready: the following call reports it).
  bool wait_for(short events) {
    const auto deadline = std::chrono::steady_clock::now() + kPatience;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, events, 0};
      const int ready = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
      if (ready > 0) return true;
      if (ready < 0 && errno != EINTR) finding("poll failed", errno);
    }
  }

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
  if (!challenge || !challenge->has_challenge()) finding("the server did not answer hello");
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
  if (!accepted || !accepted->has_auth()) finding("the server did not accept our auth");
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
