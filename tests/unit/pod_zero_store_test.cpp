// A pod's launcher reaching pod 0's store in the last moments before pod 0's launcher exits
// (issue #17): it must say that pod 0's store is gone (the job gave up or finished before this
// pod joined), never that the store is of another version or that the secrets differ. A real
// store server is shut down while a relay holds the pod's client at its worst moment.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>

#include "expect_error.hpp"
#include "holding_relay.hpp"
#include "pod_zero_store.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::ErrorKind;
using ringfuse::launcher::connect_to_pod_zero_store;
using ringfuse::launcher::Membership;
using ringfuse::rendezvous::TcpStoreServer;
using ringfuse::test_support::contains;
using ringfuse::test_support::expect_error;
using ringfuse::test_support::HoldAt;
using ringfuse::test_support::HoldingRelay;

constexpr const char* kSecret = "pod-zero-store-test-secret";

// Pod 1 of two; pod 0's store is reached at 127.0.0.1 (through the relay's port).
Membership pod_one() {
  Membership membership;
  membership.pod_ips = {"127.0.0.1", "127.0.0.3"};
  membership.pod_names = {"trainer-0", "trainer-1"};
  membership.own_index = 1;
  return membership;
}

// What pod 1's launcher says when pod 0's store shuts down while the relay holds it at `hold`.
std::string pod_one_says(HoldAt hold) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  HoldingRelay relay(server->port(), hold);
  auto pod = std::async(std::launch::async, [&] {
    return expect_error(ErrorKind::peer_failure, [&] {
      connect_to_pod_zero_store(pod_one(), relay.port(), 5s, kSecret, 4s);
    });
  });
  EXPECT_TRUE(relay.wait_until_held()) << "pod 1 never reached the step to hold it at";
  server.reset();
  relay.release();
  EXPECT_EQ(pod.wait_for(10s), std::future_status::ready) << "pod 1 hung";
  return pod.get();
}

void expect_store_gone(const std::string& message) {
  EXPECT_TRUE(contains(message, "pod 0's store is gone: the job gave up or finished before this "
                                "pod joined; trainer-0 (127.0.0.1) served it"))
      << message;
  EXPECT_FALSE(contains(message, "version")) << message;
  EXPECT_FALSE(contains(message, "secret")) << message;
  EXPECT_FALSE(contains(message, "has not joined")) << message;
}

TEST(PodZeroStore, PodAuthenticatingAsPodZeroExitsIsToldItsStoreIsGone) {
  expect_store_gone(pod_one_says(HoldAt::hello));
}

TEST(PodZeroStore, PodProvingItsSecretAsPodZeroExitsIsToldItsStoreIsGone) {
  expect_store_gone(pod_one_says(HoldAt::proof));
}

TEST(PodZeroStore, PodQueuedAsPodZeroExitsIsToldItsStoreIsGone) {
  expect_store_gone(pod_one_says(HoldAt::accept));
}

}  // namespace
