// Hostile and broken input on the two ports a job listens on during set-up: the rendezvous
// store (TcpStoreServer) and a rank's mesh listener. store_test.cpp covers garbage from an
// unauthenticated client of a store without a secret, and auth_test.cpp a forged mesh proof;
// these extend that to the authentication steps themselves (requests before or instead of the
// handshake, hello then garbage, oversized frames before authenticating) and to random or
// truncated hellos on the mesh port while the real ranks connect. In every case the offending
// connection is closed or ignored and the job's set-up still completes. Every wait is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "rendezvous/auth.hpp"
#include "rendezvous/framing.hpp"
#include "rendezvous/tcp_store.hpp"
#include "published_mesh_port.hpp"
#include "ring_exchange.hpp"
#include "ringfuse/error.hpp"
#include "store.pb.h"
#include "p2p/handshake.hpp"
#include "transport/full_mesh.hpp"
#include "transport/hello.hpp"
#include "transport/socket.hpp"
#include "transport/tcp_mesh.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::Error;
using ringfuse::rendezvous::TcpStoreClient;
using ringfuse::rendezvous::TcpStoreServer;
namespace auth = ringfuse::rendezvous::auth;
namespace framing = ringfuse::rendezvous::framing;
namespace wire = ringfuse::rendezvous::wire;
using ringfuse::test_support::published_mesh_port;

constexpr char kSecret[] = "bad-input-secret";
constexpr auto kConnect = 5s;

// A raw socket whose reads give up after `timeout_s`, so no test can hang on it.
class Raw {
 public:
  Raw(const std::string& host, std::uint16_t port, int timeout_s = 5)
      : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    EXPECT_GE(fd_, 0);
    timeval tv{timeout_s, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    EXPECT_EQ(::inet_pton(AF_INET, host.c_str(), &addr.sin_addr), 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    EXPECT_TRUE(connected_) << host << ":" << port;
  }
  ~Raw() { ::close(fd_); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  bool send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  bool send_request(const wire::Request& request) { return send(framing::encode(request)); }
  /// One response frame, or nothing when the server closed (or stayed silent until the timeout).
  std::optional<wire::Response> read_response() {
    framing::Header header{};
    if (!read_exact(reinterpret_cast<char*>(header.data()), header.size())) return std::nullopt;
    std::string body(framing::decode_length(header), '\0');
    if (body.size() > (1u << 20) || !read_exact(body.data(), body.size())) return std::nullopt;
    wire::Response response;
    if (!response.ParseFromString(body)) return std::nullopt;
    return response;
  }
  /// True when the server closed the connection (EOF or reset) within the receive timeout,
  /// reading past anything it sent first.
  bool closed_by_peer() {
    char buffer[256];
    for (;;) {
      const auto n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
  }
  /// The store handshake done by hand; returns whether the server accepted it.
  bool authenticate(const std::string& secret) {
    const auto client_nonce = auth::random_nonce();
    wire::Request hello;
    hello.set_id(1);
    hello.mutable_hello()->set_client_nonce(client_nonce);
    if (!send_request(hello)) return false;
    const auto challenge = read_response();
    if (!challenge || !challenge->has_challenge()) return false;
    wire::Request proof;
    proof.set_id(2);
    proof.mutable_auth()->set_client_proof(
        auth::proof(secret, "store-client", challenge->challenge().server_nonce(), client_nonce));
    if (!send_request(proof)) return false;
    const auto accepted = read_response();
    return accepted && accepted->has_auth();
  }

  /// Exactly `size` bytes, or false when the server closed or stayed silent.
  bool read_exact(char* out, std::size_t size) {
    std::size_t done = 0;
    while (done < size) {
      const auto n = ::recv(fd_, out + done, size - done, 0);
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }

 private:
  int fd_;
  bool connected_ = false;
};

std::string header_of(std::uint32_t length) {
  return {static_cast<char>(length >> 24), static_cast<char>(length >> 16),
          static_cast<char>(length >> 8), static_cast<char>(length)};
}

wire::Request set_request(const std::string& key, const std::string& value) {
  wire::Request request;
  request.set_id(7);
  request.mutable_set()->set_key(key);
  request.mutable_set()->set_value(value);
  return request;
}

class BadStoreInput : public testing::Test {
 protected:
  Raw raw(int timeout_s = 5) { return Raw("127.0.0.1", server_.port(), timeout_s); }
  std::unique_ptr<TcpStoreClient> client() {
    return std::make_unique<TcpStoreClient>("127.0.0.1", server_.port(), kConnect, kSecret);
  }

  TcpStoreServer server_{"127.0.0.1", 0, kSecret};
};

TEST_F(BadStoreInput, WellFormedRequestsBeforeAuthenticatingAreRefusedAndHaveNoEffect) {
  {
    auto r = raw();
    ASSERT_TRUE(r.send_request(set_request("planted", "evil")));
    EXPECT_TRUE(r.closed_by_peer());
  }
  {
    wire::Request add;
    add.set_id(3);
    add.mutable_add()->set_key("counter");
    add.mutable_add()->set_delta(100);
    auto r = raw();
    ASSERT_TRUE(r.send_request(add));
    EXPECT_TRUE(r.closed_by_peer());
  }
  auto good = client();
  EXPECT_FALSE(good->check({"planted"}));
  EXPECT_EQ(good->add("counter", 1), 1);
}

TEST_F(BadStoreInput, AuthWithoutHelloHelloTwiceAndAWrongProofAreRefused) {
  {
    wire::Request proof;
    proof.mutable_auth()->set_client_proof(std::string(auth::kProofBytes, '\0'));
    auto r = raw();
    ASSERT_TRUE(r.send_request(proof));
    EXPECT_TRUE(r.closed_by_peer());
  }
  {
    wire::Request hello;
    hello.mutable_hello()->set_client_nonce(auth::random_nonce());
    auto r = raw();
    ASSERT_TRUE(r.send_request(hello));
    ASSERT_TRUE(r.read_response().has_value());  // the challenge
    ASSERT_TRUE(r.send_request(hello));          // a second hello on the same connection
    EXPECT_TRUE(r.closed_by_peer());
  }
  {
    auto r = raw();
    EXPECT_FALSE(r.authenticate("not-the-secret"));
    EXPECT_TRUE(r.closed_by_peer());
  }
  {
    // The right secret through the same hand-made path: the refusals above were not the
    // test's own handshake being wrong.
    auto r = raw();
    EXPECT_TRUE(r.authenticate(kSecret));
    ASSERT_TRUE(r.send_request(set_request("by-hand", "ok")));
    const auto answer = r.read_response();
    ASSERT_TRUE(answer.has_value());
    EXPECT_TRUE(answer->has_set());
  }
  EXPECT_EQ(client()->get("by-hand", 5s), "ok");
}

TEST_F(BadStoreInput, HelloThenGarbageIsClosedWhileOthersAreServed) {
  auto good = client();
  auto waiting = std::async(std::launch::async, [&] { return good->get("later", 10s); });
  std::mt19937 random(12345);
  for (const std::size_t size : {1u, 3u, 4u, 17u, 300u}) {
    wire::Request hello;
    hello.mutable_hello()->set_client_nonce(auth::random_nonce());
    auto r = raw();
    ASSERT_TRUE(r.send_request(hello));
    ASSERT_TRUE(r.read_response().has_value());
    std::string garbage(size, '\0');
    for (auto& c : garbage) c = static_cast<char>(random());
    garbage[0] = '\0';  // a small length, so the server reads it as a (bad) frame at once
    ASSERT_TRUE(r.send(garbage + std::string(300, '\x5a')));
    EXPECT_TRUE(r.closed_by_peer()) << "garbage of " << size << " bytes after hello";
  }
  client()->set("later", "1");
  ASSERT_EQ(waiting.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(waiting.get(), "1");
}

TEST_F(BadStoreInput, AuthenticatedClientSendingGarbageLosesOnlyItsOwnConnection) {
  auto good = client();
  good->set("kept", "yes");
  {
    auto r = raw();
    ASSERT_TRUE(r.authenticate(kSecret));
    ASSERT_TRUE(r.send(header_of(5) + "\xff\xff\xff\xff\xff"));  // not a protobuf Request
    EXPECT_TRUE(r.closed_by_peer());
  }
  {
    auto r = raw();
    ASSERT_TRUE(r.authenticate(kSecret));
    ASSERT_TRUE(r.send(header_of(0)));  // names no operation
    EXPECT_TRUE(r.closed_by_peer());
  }
  {
    auto r = raw();
    ASSERT_TRUE(r.authenticate(kSecret));
    ASSERT_TRUE(r.send(header_of(1000) + "short"));  // truncated, then the client leaves
  }
  EXPECT_EQ(good->get("kept", 5s), "yes");
  EXPECT_EQ(client()->add("n", 2), 2);
}

// Before authenticating, only hello and auth are legal, and both are tiny: a large length
// prefix from a stranger is refused at once instead of the server setting aside that much
// memory and waiting for the body (64 MiB per connection otherwise).
TEST_F(BadStoreInput, OversizedFramesBeforeAuthenticatingAreRefusedWithoutWaiting) {
  std::vector<std::unique_ptr<Raw>> strangers;
  for (int i = 0; i < 4; ++i) {
    strangers.push_back(std::make_unique<Raw>("127.0.0.1", server_.port(), 3));
    ASSERT_TRUE(strangers.back()->send(header_of(framing::kMaxFrameBytes)));
  }
  for (auto& s : strangers) EXPECT_TRUE(s->closed_by_peer());
  EXPECT_EQ(client()->add("still-serving", 1), 1);
}

// --- the mesh listener ---

using ringfuse::transport::Hello;
using ringfuse::transport::kHelloVersion;
constexpr std::uint32_t kMeshMagic = 0x52465345;  // "RFSE", full_mesh.cpp's

std::string bytes_of(const Hello& hello) {
  return std::string(reinterpret_cast<const char*>(&hello), sizeof(hello));
}

// Sends what a stranger might to `port` during set-up: random bytes, a hello cut short,
// hellos that are wrong in each field, and a connection that closes at once.
void attack_mesh_port(std::uint16_t port, const std::string& job_id, int size) {
  std::mt19937 random(777);
  auto random_bytes = [&](std::size_t n) {
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(random());
    return out;
  };
  const Hello good{kMeshMagic,
                   kHelloVersion,
                   static_cast<std::uint32_t>(size - 1),
                   ringfuse::transport::job_hash(job_id),
                   {}};
  std::vector<std::string> payloads = {random_bytes(sizeof(Hello)), random_bytes(4096),
                                       bytes_of(good).substr(0, 10), std::string()};
  Hello h = good;
  h.magic = 0x48545450;  // "HTTP"-ish
  payloads.push_back(bytes_of(h));
  h = good;
  h.version = 99;
  payloads.push_back(bytes_of(h));
  h = good;
  h.job_hash ^= 1;  // another job
  payloads.push_back(bytes_of(h));
  h = good;
  h.rank = 0;  // not a higher rank
  payloads.push_back(bytes_of(h));
  h = good;
  h.rank = static_cast<std::uint32_t>(size);  // beyond the world
  payloads.push_back(bytes_of(h));
  h = good;
  h.rank = 0xffffffffu;
  payloads.push_back(bytes_of(h));
  for (const auto& payload : payloads) {
    Raw r("127.0.0.1", port, 3);
    if (!payload.empty()) r.send(payload);
    // Closing right after sending: a cut-short hello must not hold the listener.
  }
  // One truncated hello held open: the rank waits for it at most its hello deadline (5 s).
  Raw held("127.0.0.1", port, 8);
  held.send(bytes_of(good).substr(0, 7));
  std::this_thread::sleep_for(200ms);
}

ringfuse::transport::MeshOptions mesh_options(const std::string& job_id,
                                              std::chrono::seconds connect_timeout) {
  ringfuse::transport::MeshOptions options;
  options.secret = kSecret;
  options.job_id = job_id;
  options.connect_timeout = connect_timeout;
  return options;
}

TEST(BadMeshInput, GarbageOnTheMeshPortDuringSetUpDoesNotStopTheJob) {
  constexpr int kSize = 3;
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  auto options = mesh_options("bad-input-test", 40s);
  options.op_timeout = 10s;

  std::vector<std::unique_ptr<TcpStoreClient>> stores;
  for (int r = 0; r < kSize; ++r) {
    stores.push_back(std::make_unique<TcpStoreClient>("127.0.0.1", server.port(), kConnect, kSecret));
  }
  using Mesh = ringfuse::transport::TcpMesh;
  auto start = [&](int rank) {
    return std::async(std::launch::async, [&, rank] {
      return std::make_unique<Mesh>(rank, kSize, *stores[rank], options);
    });
  };
  // Ranks 0 and 1 listen; the stranger hits both ports before rank 2 (and so rank 1's
  // connection to rank 0 follows the garbage too, on rank 0's listener) arrives.
  auto rank0 = start(0);
  TcpStoreClient spy("127.0.0.1", server.port(), kConnect, kSecret);
  attack_mesh_port(published_mesh_port(spy, options.key_prefix, 0), options.job_id, kSize);
  auto rank1 = start(1);
  attack_mesh_port(published_mesh_port(spy, options.key_prefix, 1), options.job_id, kSize);
  auto rank2 = start(2);

  std::vector<std::unique_ptr<Mesh>> meshes;
  for (auto* pending : {&rank0, &rank1, &rank2}) {
    ASSERT_EQ(pending->wait_for(35s), std::future_status::ready) << "set-up did not finish";
    meshes.push_back(pending->get());
  }
  // Data flows around the ring: every rank sends its rank to the next.
  ASSERT_NO_FATAL_FAILURE(ringfuse::test_support::expect_ring_exchange(meshes));
}

// A rank of another Ringfuse build (another wire version) that connects is told this rank's
// version and refused, and the job goes on waiting for its real peer.
TEST(BadMeshInput, AHelloOfAnotherWireVersionIsAnsweredWithOursAndRefused) {
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  const auto options = mesh_options("version-test", 30s);
  TcpStoreClient store0("127.0.0.1", server.port(), kConnect, kSecret);
  TcpStoreClient store1("127.0.0.1", server.port(), kConnect, kSecret);
  using Mesh = ringfuse::transport::TcpMesh;
  auto rank0 = std::async(std::launch::async,
                          [&] { return std::make_unique<Mesh>(0, 2, store0, options); });
  TcpStoreClient spy("127.0.0.1", server.port(), kConnect, kSecret);
  {
    Raw older("127.0.0.1", published_mesh_port(spy, options.key_prefix, 0), 5);
    const Hello old{kMeshMagic, kHelloVersion - 1, 1,
                    ringfuse::transport::job_hash(options.job_id), {}};
    ASSERT_TRUE(older.send(bytes_of(old)));
    Hello reply{};
    ASSERT_TRUE(older.read_exact(reinterpret_cast<char*>(&reply), sizeof(reply)))
        << "no hello came back to a rank of another version";
    EXPECT_EQ(reply.magic, kMeshMagic);
    EXPECT_EQ(reply.version, kHelloVersion);
    EXPECT_TRUE(older.closed_by_peer()) << "a rank of another version was not refused";
  }
  auto rank1 = std::async(std::launch::async,
                          [&] { return std::make_unique<Mesh>(1, 2, store1, options); });
  ASSERT_EQ(rank0.wait_for(25s), std::future_status::ready);
  ASSERT_EQ(rank1.wait_for(25s), std::future_status::ready);
  EXPECT_NO_THROW(rank0.get());
  EXPECT_NO_THROW(rank1.get());
}

// Connecting to a listener of another wire version fails at once, saying so.
TEST(BadMeshInput, AListenerOfAnotherWireVersionIsNamedAsSuch) {
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  const auto options = mesh_options("version-test", 30s);
  // Rank 0 of an older build: a listener that answers any hello with a hello of version 1.
  auto listening = ringfuse::transport::listen_on("127.0.0.1", 4);
  const ringfuse::transport::Socket& listener = listening.first;
  TcpStoreClient publisher("127.0.0.1", server.port(), kConnect, kSecret);
  publisher.set(options.key_prefix + "mesh/addr/0",
                "127.0.0.1:" + std::to_string(listening.second));
  std::thread older([&listener] {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    pollfd ready{listener.fd(), POLLIN, 0};
    if (::poll(&ready, 1, 10'000) != 1) return;
    const ringfuse::transport::Socket peer(
        ::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!peer.valid()) return;
    try {
      Hello hello{};
      if (!ringfuse::transport::read_all(peer.fd(), &hello, sizeof(hello), deadline)) return;
      const Hello reply{kMeshMagic, kHelloVersion - 1, 0, hello.job_hash, {}};
      (void)ringfuse::transport::write_all(peer.fd(), &reply, sizeof(reply), deadline);
    } catch (const std::exception&) {
      // The connector went away first: its own assertions say what happened.
    }
  });
  TcpStoreClient store1("127.0.0.1", server.port(), kConnect, kSecret);
  const auto started = std::chrono::steady_clock::now();
  try {
    ringfuse::transport::TcpMesh mesh(1, 2, store1, options);
    ADD_FAILURE() << "connected to a listener of another wire version";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("wire version " + std::to_string(kHelloVersion - 1) +
                        ", this rank one of version " + std::to_string(kHelloVersion)),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("same Ringfuse build"), std::string::npos) << what;
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s) << "not refused at once";
  older.join();
}

// Two connected ends, as a point-to-point connection's two sides.
std::pair<ringfuse::transport::Socket, ringfuse::transport::Socket> connected_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  return {ringfuse::transport::Socket(fds[0]), ringfuse::transport::Socket(fds[1])};
}

// The point-to-point hello of position `rank` of `job_id`, as a build of the previous wire
// version sends it.
Hello older_p2p_hello(std::uint32_t rank, const std::string& job_id) {
  return Hello{ringfuse::p2p::kHelloMagic, kHelloVersion - 1, rank,
               ringfuse::transport::job_hash(job_id), {}};
}

// The point-to-point listener's side of the same: a connector of another wire version gets
// this rank's hello (no proof) and is refused.
TEST(BadP2pInput, AHelloOfAnotherWireVersionIsAnsweredWithOursAndRefused) {
  auto [acceptor, older] = connected_pair();
  const ringfuse::p2p::Identity self{0, 2, "version-test", kSecret, "point-to-point", {}};
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto accepted = std::async(std::launch::async, [&] {
    return ringfuse::p2p::authenticate_connector(acceptor, self, deadline);
  });
  const Hello old = older_p2p_hello(1, self.job_id);
  ASSERT_TRUE(ringfuse::transport::write_all(older.fd(), &old, sizeof(old), deadline));
  Hello reply{};
  ASSERT_TRUE(ringfuse::transport::read_all(older.fd(), &reply, sizeof(reply), deadline))
      << "no hello came back to a rank of another version";
  EXPECT_EQ(reply.magic, ringfuse::p2p::kHelloMagic);
  EXPECT_EQ(reply.version, kHelloVersion);
  ASSERT_EQ(accepted.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(accepted.get(), -1) << "a rank of another version was accepted";
}

TEST(BadP2pInput, AConnectorAnsweredByAnotherWireVersionFailsAtOnceSayingSo) {
  auto [connector, older] = connected_pair();
  const ringfuse::p2p::Identity self{0, 2, "version-test", kSecret, "point-to-point", {}};
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto answered = std::async(std::launch::async, [&] {
    Hello hello{};
    if (!ringfuse::transport::read_all(older.fd(), &hello, sizeof(hello), deadline)) return false;
    const Hello old = older_p2p_hello(1, self.job_id);
    return ringfuse::transport::write_all(older.fd(), &old, sizeof(old), deadline);
  });
  const auto start = std::chrono::steady_clock::now();
  try {
    ringfuse::p2p::authenticate_to_acceptor(connector, self, 1, deadline);
    ADD_FAILURE() << "an acceptor of another wire version was trusted";
  } catch (const ringfuse::Error& e) {
    EXPECT_EQ(e.kind(), ringfuse::ErrorKind::protocol) << e.what();
    EXPECT_NE(std::string(e.what()).find("every rank of a job must run the same Ringfuse build"),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "it waited instead of failing";
  EXPECT_TRUE(answered.get());
}

TEST(BadP2pInput, ConnectorAndAcceptorOfOneJobProveThemselvesToEachOther) {
  auto [connector, acceptor] = connected_pair();
  const ringfuse::p2p::Identity rank0{0, 2, "pair-test", kSecret, "point-to-point", {}};
  const ringfuse::p2p::Identity rank1{1, 2, "pair-test", kSecret, "point-to-point", {}};
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  auto accepted = std::async(std::launch::async, [&] {
    return ringfuse::p2p::authenticate_connector(acceptor, rank1, deadline);
  });
  EXPECT_NO_THROW(ringfuse::p2p::authenticate_to_acceptor(connector, rank0, 1, deadline));
  EXPECT_EQ(accepted.get(), 0);
}

}  // namespace
