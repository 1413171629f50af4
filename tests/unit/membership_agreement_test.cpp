// The pods' agreement on the membership (launcher/membership_agreement.hpp) when a pod joins
// within moments of another pod giving up: every pod must reach the same outcome, either all
// of them start or every one of them names the pod that has not joined. Pods are threads of
// this process, each with its own client of a real TCP store on loopback.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "membership_agreement.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::Error;
using ringfuse::launcher::agree_on_membership;
using ringfuse::launcher::Membership;
using ringfuse::rendezvous::Store;
using ringfuse::rendezvous::TcpStoreClient;
using ringfuse::rendezvous::TcpStoreServer;

constexpr int kPods = 4;
constexpr const char* kSecret = "membership-test-secret";

Membership membership_of(int pod) {
  Membership membership;
  for (int k = 0; k < kPods; ++k) {
    membership.pod_ips.push_back("127.0.0." + std::to_string(k + 2));
    membership.pod_names.push_back("trainer-" + std::to_string(k));
  }
  membership.own_index = pod;
  return membership;
}

// Pod 0's client of the store, which lets the test act at one precise moment: just before
// pod 0's first write after publishing its own view, i.e. when its deadline has passed and it
// is about to write what it concluded. Every call goes to the real store.
class FirstDecisionHook final : public Store {
 public:
  FirstDecisionHook(Store& store, std::function<void()> hook)
      : store_(store), hook_(std::move(hook)) {}
  void set(const std::string& key, std::string_view value) override {
    if (key.find("/view/") == std::string::npos) run_hook();
    store_.set(key, value);
  }
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override {
    return store_.get(key, timeout);
  }
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override {
    store_.wait(keys, timeout);
  }
  std::int64_t add(const std::string& key, std::int64_t delta) override {
    run_hook();
    return store_.add(key, delta);
  }
  bool remove(const std::string& key) override { return store_.remove(key); }
  bool check(const std::vector<std::string>& keys) override { return store_.check(keys); }

 private:
  void run_hook() {
    if (hook_) std::exchange(hook_, nullptr)();
  }
  Store& store_;
  std::function<void()> hook_;
};

// What agree_on_membership did for one pod: nullopt when it agreed (the pod would start its
// ranks), else the message it threw.
using Outcome = std::optional<std::string>;

Outcome agree(Store& store, int pod, std::chrono::milliseconds timeout) {
  try {
    agree_on_membership(store, membership_of(pod), timeout, 1s);
  } catch (const Error& error) {
    return std::string(error.what());
  }
  return std::nullopt;
}

std::string describe(const Outcome& outcome) {
  return outcome ? "gave up: " + *outcome : std::string("agreed");
}

// Pods 1 and 2 join at once; pod 3 publishes its view just after pod 0 saw it missing at its
// deadline (1 s) and before pod 0 wrote its conclusion. Pod 0 must not give up on a pod that
// then starts its ranks: every pod reaches the same outcome.
TEST(MembershipAgreement, APodJoiningAsPodZeroGivesUpGetsTheSameOutcomeAsEveryPod) {
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  std::vector<std::unique_ptr<TcpStoreClient>> clients;
  for (int pod = 0; pod < kPods; ++pod) {
    clients.push_back(std::make_unique<TcpStoreClient>("127.0.0.1", server.port(), 5s, kSecret));
  }
  std::future<Outcome> pod3;
  TcpStoreClient observer("127.0.0.1", server.port(), 5s, kSecret);
  FirstDecisionHook pod0_store(*clients[0], [&] {
    pod3 = std::async(std::launch::async, [&] { return agree(*clients[3], 3, 10s); });
    // Pod 0 goes on once pod 3 has published its view and has got as far as it can alone.
    EXPECT_NO_THROW(observer.wait({"ringfuse-run/k8s/view/3"}, 5s));
    pod3.wait_for(2s);
  });
  auto pod1 = std::async(std::launch::async, [&] { return agree(*clients[1], 1, 10s); });
  auto pod2 = std::async(std::launch::async, [&] { return agree(*clients[2], 2, 10s); });
  const Outcome pod0 = agree(pod0_store, 0, 1s);
  ASSERT_TRUE(pod3.valid()) << "pod 0 never wrote after its deadline: " << describe(pod0);
  const std::vector<Outcome> outcomes{pod0, pod1.get(), pod2.get(), pod3.get()};
  for (int pod = 1; pod < kPods; ++pod) {
    EXPECT_EQ(outcomes[pod].has_value(), pod0.has_value())
        << "pod 0 " << describe(pod0) << "\npod " << pod << " " << describe(outcomes[pod]);
  }
  for (int pod = 0; pod < kPods; ++pod) {
    if (outcomes[pod]) {
      EXPECT_NE(outcomes[pod]->find("trainer-3 (127.0.0.5) has not joined after 1 s"),
                std::string::npos)
          << "pod " << pod << ": " << *outcomes[pod];
    }
  }
}

// Pod 3 reaches the store only after the job gave up on it (pod 0's deadline, 1 s): it must
// be told clearly, naming itself as the pod that has not joined, and why.
TEST(MembershipAgreement, APodJoiningAfterTheJobGaveUpIsToldItCameTooLate) {
  TcpStoreServer server("127.0.0.1", 0, kSecret);
  std::vector<std::unique_ptr<TcpStoreClient>> clients;
  for (int pod = 0; pod < kPods; ++pod) {
    clients.push_back(std::make_unique<TcpStoreClient>("127.0.0.1", server.port(), 5s, kSecret));
  }
  auto pod1 = std::async(std::launch::async, [&] { return agree(*clients[1], 1, 10s); });
  auto pod2 = std::async(std::launch::async, [&] { return agree(*clients[2], 2, 10s); });
  const Outcome pod0 = agree(*clients[0], 0, 1s);  // gives up, then keeps the store up 1 s
  const Outcome pod3 = agree(*clients[3], 3, 10s);
  const std::string text = "trainer-3 (127.0.0.5) has not joined after 1 s";
  for (const Outcome& outcome : {pod0, pod1.get(), pod2.get(), pod3}) {
    ASSERT_TRUE(outcome.has_value());
    EXPECT_NE(outcome->find(text), std::string::npos) << *outcome;
  }
  EXPECT_NE(pod3->find("this pod, trainer-3 (127.0.0.5), reached the store after the job had "
                       "given up on it"),
            std::string::npos)
      << *pod3;
}

}  // namespace
