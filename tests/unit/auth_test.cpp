// The job secret: a store client or a mesh peer that cannot prove RINGFUSE_JOB_SECRET is
// refused, while the processes that can carry on.
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <array>
#include <future>
#include <thread>

#include "published_mesh_port.hpp"
#include "rendezvous/auth.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "transport/hello.hpp"
#include "transport/socket.hpp"
#include "transport/tcp_mesh.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::Error;
using ringfuse::ErrorKind;
using ringfuse::rendezvous::TcpStoreClient;
using ringfuse::rendezvous::TcpStoreServer;

constexpr char kSecret[] = "the-right-secret";

TEST(Auth, ProofsDependOnSecretLabelAndNonces) {
  namespace auth = ringfuse::rendezvous::auth;
  const auto a = auth::random_nonce();
  const auto b = auth::random_nonce();
  EXPECT_NE(a, b);
  const auto p = auth::proof(kSecret, "x", a, b);
  EXPECT_TRUE(auth::proofs_equal(p, auth::proof(kSecret, "x", a, b)));
  EXPECT_FALSE(auth::proofs_equal(p, auth::proof("other", "x", a, b)));
  EXPECT_FALSE(auth::proofs_equal(p, auth::proof(kSecret, "y", a, b)));
  EXPECT_FALSE(auth::proofs_equal(p, auth::proof(kSecret, "x", b, a)));
}

TEST(Auth, StoreRefusesAWrongSecretAndKeepsServingTheJob) {
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  TcpStoreClient good("127.0.0.1", server.port(), 5s, kSecret);
  good.set("k", "v");
  try {
    TcpStoreClient bad("127.0.0.1", server.port(), 5s, "a-wrong-secret");
    FAIL() << "a client with the wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::peer_failure);
    EXPECT_NE(std::string(e.what()).find("secret"), std::string::npos) << e.what();
  }
  try {
    TcpStoreClient none("127.0.0.1", server.port(), 5s);
    FAIL() << "a client without a secret was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("secret"), std::string::npos) << e.what();
  }
  EXPECT_EQ(good.get("k", 1s), "v");
}

TEST(Auth, MeshRefusesAnImpostorAndConnectsTheRealPeer) {
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  ringfuse::transport::MeshOptions options;
  options.secret = kSecret;
  options.job_id = "auth-test";
  options.connect_timeout = 20s;
  options.op_timeout = 10s;

  TcpStoreClient store0("127.0.0.1", server.port(), 5s, kSecret);
  auto rank0 = std::async(std::launch::async, [&] {
    return std::make_unique<ringfuse::transport::TcpMesh>(0, 2, store0, options);
  });

  // The impostor knows the job id and the protocol, not the secret: it claims to be rank 1.
  TcpStoreClient spy("127.0.0.1", server.port(), 5s, kSecret);  // only to find the address
  auto socket = ringfuse::transport::connect_with_retry(
      "127.0.0.1", ringfuse::test_support::published_mesh_port(spy, options.key_prefix, 0),
      std::chrono::steady_clock::now() + 5s);
  struct {
    std::uint32_t magic, version, rank, job_hash;
    std::array<char, 16> nonce;
  } hello{0x52465345, ringfuse::transport::kHelloVersion, 1, 0, {}};
  std::uint32_t hash = 2166136261u;  // FNV-1a of the job id, as the mesh computes it
  for (unsigned char c : options.job_id) {
    hash ^= c;
    hash *= 16777619u;
  }
  hello.job_hash = hash;
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  ASSERT_TRUE(ringfuse::transport::write_all(socket.fd(), &hello, sizeof(hello), deadline));
  std::array<char, sizeof(hello) + 32> reply{};
  ASSERT_TRUE(ringfuse::transport::read_all(socket.fd(), reply.data(), reply.size(), deadline));
  const std::array<char, 32> forged{};
  ASSERT_TRUE(ringfuse::transport::write_all(socket.fd(), forged.data(), forged.size(), deadline));

  // The real rank 1 still gets in, and data flows.
  TcpStoreClient store1("127.0.0.1", server.port(), 5s, kSecret);
  ringfuse::transport::TcpMesh rank1(1, 2, store1, options);
  auto mesh0 = rank0.get();
  int sent = 42, received = 0;
  auto exchange = std::async(std::launch::async, [&] { mesh0->send(1, &sent, sizeof(sent)); });
  rank1.recv(0, &received, sizeof(received));
  exchange.get();
  EXPECT_EQ(received, 42);
}

}  // namespace
