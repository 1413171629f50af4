// The store server going away while a client connects, authenticates or waits (pod 0's
// launcher exiting at the end of its grace period, issue #17): the client must be told that
// the store is shutting down, never that the server is of another version or that the secrets
// differ. Real server, real client, real sockets on loopback; a relay between them holds the
// client at the chosen step of its handshake, so the worst moment is hit every time.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <future>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "expect_error.hpp"
#include "holding_relay.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::rendezvous {
namespace {

using namespace std::chrono_literals;
using test_support::contains;
using test_support::HoldAt;
using test_support::HoldingRelay;
using test_support::loopback;

constexpr auto kConnect = 5000ms;
constexpr auto kLong = 10000ms;  // a deadline the test expects never to reach
const std::string kSecret = "store-shutdown-test-secret";

struct Outcome {
  bool store_closing = false;  // a StoreClosingError, not another Error
  std::string message;
};

// Connects a client through the relay, shuts the server down while the relay holds the client,
// and returns what the client said.
Outcome shut_down_while_held(HoldAt hold) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  HoldingRelay relay(server->port(), hold);
  auto client = std::async(std::launch::async, [&] {
    Outcome outcome;
    try {
      TcpStoreClient store("127.0.0.1", relay.port(), kConnect, kSecret);
      outcome.message = "connected";
    } catch (const StoreClosingError& e) {
      outcome = {true, e.what()};
    } catch (const Error& e) {
      outcome.message = e.what();
    }
    return outcome;
  });
  EXPECT_TRUE(relay.wait_until_held()) << "the client never reached the step to hold it at";
  server.reset();
  relay.release();
  EXPECT_EQ(client.wait_for(kLong), std::future_status::ready) << "the client hung";
  return client.get();
}

void expect_told_store_is_closing(const Outcome& outcome) {
  EXPECT_TRUE(outcome.store_closing) << outcome.message;
  EXPECT_TRUE(contains(outcome.message, "shut")) << outcome.message;
  // Neither a version nor a secret problem: the server simply went away.
  EXPECT_FALSE(contains(outcome.message, "version")) << outcome.message;
  EXPECT_FALSE(contains(outcome.message, "secret")) << outcome.message;
}

TEST(StoreShutdown, ClientWhoseHelloIsUnansweredIsToldTheStoreIsClosing) {
  expect_told_store_is_closing(shut_down_while_held(HoldAt::hello));
}

TEST(StoreShutdown, ClientWhoseProofIsUnansweredIsToldTheStoreIsClosingNotAWrongSecret) {
  expect_told_store_is_closing(shut_down_while_held(HoldAt::proof));
}

TEST(StoreShutdown, ClientQueuedBeforeAcceptIsToldTheStoreHasShutDown) {
  expect_told_store_is_closing(shut_down_while_held(HoldAt::accept));
}

TEST(StoreShutdown, ParkedWaitIsToldTheStoreIsClosing) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  TcpStoreClient store("127.0.0.1", server->port(), kConnect, kSecret);
  store.set("present", "1");
  auto waiting = std::async(std::launch::async, [&] {
    Outcome outcome;
    try {
      store.get("never", 60s);
    } catch (const StoreClosingError& e) {
      outcome = {true, e.what()};
    } catch (const Error& e) {
      outcome.message = e.what();
    }
    return outcome;
  });
  // Parked or still on its way, the get is answered by the notice the server sends every
  // connection as it closes.
  server.reset();
  ASSERT_EQ(waiting.wait_for(kLong), std::future_status::ready) << "client hung";
  const auto outcome = waiting.get();
  EXPECT_TRUE(outcome.store_closing) << outcome.message;
  EXPECT_TRUE(contains(outcome.message, "get 'never'")) << outcome.message;
  EXPECT_TRUE(contains(outcome.message, "shutting down")) << outcome.message;
}

TEST(StoreShutdown, ConnectingAfterShutdownIsRefused) {
  auto server = std::make_unique<TcpStoreServer>("127.0.0.1", 0, kSecret);
  const auto port = server->port();
  server.reset();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto addr = loopback(port);
  EXPECT_NE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(errno, ECONNREFUSED);
  ::close(fd);
}

}  // namespace
}  // namespace ringfuse::rendezvous
