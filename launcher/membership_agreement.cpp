#include "membership_agreement.hpp"

#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rendezvous/prefix_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How often a pod looks at who has joined (and whether another pod gave up), and how long pod
// 0 keeps its store up after giving up so that the waiting pods read why instead of a lost
// connection.
constexpr auto kPoll = 100ms;
constexpr auto kLinger = 1s;

std::string view_key(std::size_t pod) { return "view/" + std::to_string(pod); }
constexpr const char* kGaveUpKey = "gave-up";

}  // namespace

void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout,
                         std::chrono::milliseconds start_timeout) {
  const std::string own = membership.canonical();
  const std::size_t pods = membership.pod_ips.size();
  const std::string store_at = membership.pod_ips.front();
  rendezvous::PrefixStore k8s(store, "ringfuse-run/k8s/");
  const auto deadline = Clock::now() + timeout;
  std::vector<std::size_t> missing;
  try {
    k8s.set(view_key(static_cast<std::size_t>(membership.own_index)), own);
    while (true) {
      missing.clear();
      for (std::size_t pod = 0; pod < pods; ++pod) {
        if (!k8s.check({view_key(pod)})) missing.push_back(pod);
      }
      if (missing.empty()) break;
      if (k8s.check({kGaveUpKey})) {
        throw Error(ErrorKind::timeout, k8s.get(kGaveUpKey, 1s));
      }
      if (Clock::now() >= deadline) break;
      std::this_thread::sleep_for(kPoll);
    }
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::timeout) throw;
    throw Error(ErrorKind::peer_failure,
                fmt::format("the store on pod 0 ({}) went away while this pod waited for the "
                            "others to join (pod 0's launcher ended: see its log): {}",
                            store_at, e.what()));
  }
  if (!missing.empty()) {
    std::vector<std::string> named;
    for (const std::size_t pod : missing) {
      named.push_back(fmt::format("pod {} ({})", pod, membership.pod_ips[pod]));
    }
    const std::string message = fmt::format(
        "{} {} not joined after {} s: {} in the Service's DNS records, but its ringfuse-run "
        "never reached the store on pod 0 ({}); see its events and log (kubectl describe pod, "
        "kubectl logs): not started, crashed, or cut off by a network policy",
        fmt::join(named, ", "), missing.size() == 1 ? "has" : "have",
        std::chrono::duration_cast<std::chrono::seconds>(start_timeout).count(),
        missing.size() == 1 ? "it is" : "each is", store_at);
    try {
      // Every waiting pod reads this instead of its own timeout or a lost connection.
      if (!k8s.check({kGaveUpKey})) k8s.set(kGaveUpKey, message);
      if (membership.own_index == 0) std::this_thread::sleep_for(kLinger);
    } catch (const std::exception&) {
      // Best effort: the message below is what this pod reports.
    }
    throw Error(ErrorKind::timeout, message);
  }

  std::string differing;
  for (std::size_t pod = 0; pod < pods; ++pod) {
    const std::string view = k8s.get(view_key(pod), 1s);
    if (view != own) differing += "\n  pod " + std::to_string(pod) + " saw " + view;
  }
  if (!differing.empty()) {
    throw Error(ErrorKind::invalid_config,
                "the pods disagree on the membership; this pod (" +
                    std::to_string(membership.own_index) + ") saw " + own + differing +
                    "\n(DNS answers changed during start-up: restart the job)");
  }
}

}  // namespace ringfuse::launcher
