// The "ringfuse" backend's view of torch's store (python/src/process_group_store.hpp) against
// a real c10d TCPStore: Ringfuse's waits have deadlines, where a zero timeout means "do not
// wait" (c10d's means "forever"), and a wait that timed out must leave the connection usable
// (a timed-out c10d wait answers later, into whatever request comes next). Both once hung a
// rank's failure report until the group's timeout.
#include <gtest/gtest.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <thread>

#include "process_group_store.hpp"
#include "ringfuse/error.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class C10dStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    c10d::TCPStoreOptions server_options;
    server_options.port = 0;
    server_options.isServer = true;
    server_options.waitWorkers = false;
    server_options.timeout = 10s;
    server_ = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", server_options);
    c10d::TCPStoreOptions client_options = server_options;
    client_options.port = static_cast<std::uint16_t>(server_->getPort());
    client_options.isServer = false;
    store_.emplace(c10::make_intrusive<c10d::TCPStore>("127.0.0.1", client_options), 3);
  }

  // Runs `call`, which must throw Error(timeout) within `within`.
  static void expect_timeout(const std::function<void()>& call, std::chrono::milliseconds within) {
    const auto start = Clock::now();
    try {
      call();
      ADD_FAILURE() << "no error";
    } catch (const ringfuse::Error& error) {
      EXPECT_EQ(error.kind(), ringfuse::ErrorKind::timeout) << error.what();
      EXPECT_NE(std::string(error.what()).find("rank 3"), std::string::npos) << error.what();
    }
    EXPECT_LT(Clock::now() - start, within);
  }

  c10::intrusive_ptr<c10d::TCPStore> server_;
  std::optional<ringfuse::python::C10dStore> store_;
};

TEST_F(C10dStoreTest, AZeroTimeoutDoesNotWait) {
  expect_timeout([&] { store_->get("absent", 0ms); }, 2s);
  expect_timeout([&] { store_->wait({"absent"}, 0ms); }, 2s);
  server_->set("present", std::vector<std::uint8_t>{'1'});
  EXPECT_EQ(store_->get("present", 0ms), "1");
}

TEST_F(C10dStoreTest, AWaitThatTimedOutLeavesTheConnectionUsable) {
  expect_timeout([&] { store_->wait({"late"}, 100ms); }, 5s);
  server_->set("late", std::vector<std::uint8_t>{'x'});  // what the timed-out wait waited for
  EXPECT_FALSE(store_->check({"absent"}));
  EXPECT_TRUE(store_->check({"late"}));
  EXPECT_EQ(store_->get("late", 1s), "x");
  EXPECT_EQ(store_->add("count", 5), 5);
  expect_timeout([&] { store_->get("absent", 200ms); }, 5s);
}

TEST_F(C10dStoreTest, AWaitReturnsOnceAnotherClientSetsTheKey) {
  std::thread setter([&] {
    std::this_thread::sleep_for(50ms);
    server_->set("soon", std::vector<std::uint8_t>{'s'});
  });
  EXPECT_EQ(store_->get("soon", 5s), "s");
  setter.join();
}

TEST_F(C10dStoreTest, AWaitForManyKeysEndsWhenTheLastArrivesAndNamesTheMissingOnes) {
  server_->set("k/0", std::vector<std::uint8_t>{'0'});
  std::thread setter([&] {
    std::this_thread::sleep_for(30ms);
    server_->set("k/2", std::vector<std::uint8_t>{'2'});
    std::this_thread::sleep_for(30ms);
    server_->set("k/1", std::vector<std::uint8_t>{'1'});
  });
  EXPECT_NO_THROW(store_->wait({"k/0", "k/1", "k/2"}, 5s));
  setter.join();
  try {
    store_->wait({"k/0", "k/1", "k/3", "k/2"}, 100ms);
    ADD_FAILURE() << "no error";
  } catch (const ringfuse::Error& error) {
    EXPECT_NE(std::string(error.what()).find("[k/3, k/2]"), std::string::npos) << error.what();
  }
}

}  // namespace
