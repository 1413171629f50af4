#include "membership_agreement.hpp"

#include <algorithm>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rendezvous/prefix_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How often a pod looks at who has joined (and whether another pod gave up).
constexpr auto kPoll = 100ms;
// How long pod 0 keeps its store up after the job gave up, so that pods which start later
// (up to this long after pod 0's deadline) still read which pod is missing instead of a lost
// or refused connection: the job's start timeout, within these bounds.
constexpr std::chrono::milliseconds kMinLinger = 1s;
constexpr std::chrono::milliseconds kMaxLinger = 10s;

std::string view_key(std::size_t pod) { return "view/" + std::to_string(pod); }
constexpr const char* kGaveUpKey = "gave-up";

std::vector<std::size_t> not_joined(rendezvous::Store& k8s, std::size_t pods) {
  std::vector<std::size_t> missing;
  for (std::size_t pod = 0; pod < pods; ++pod) {
    if (!k8s.check({view_key(pod)})) missing.push_back(pod);
  }
  return missing;
}

std::string not_joined_message(const Membership& membership,
                               const std::vector<std::size_t>& missing,
                               std::chrono::milliseconds start_timeout) {
  std::vector<std::string> named;
  for (const std::size_t pod : missing) named.push_back(membership.describe(pod));
  return fmt::format(
      "{} {} not joined after {} s: {} in the Service's DNS records, but its ringfuse-run "
      "never reached the store on {}; see its events and log (kubectl describe pod, "
      "kubectl logs): not started, crashed, or cut off by a network policy",
      fmt::join(named, ", "), missing.size() == 1 ? "has" : "have",
      std::chrono::duration_cast<std::chrono::seconds>(start_timeout).count(),
      missing.size() == 1 ? "it is" : "each is", membership.describe(0));
}

}  // namespace

void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout,
                         std::chrono::milliseconds start_timeout) {
  const std::string own = membership.canonical();
  const std::size_t pods = membership.pod_ips.size();
  rendezvous::PrefixStore k8s(store, "ringfuse-run/k8s/");
  const auto deadline = Clock::now() + timeout;
  std::vector<std::size_t> missing;
  std::optional<std::string> gave_up;  // why the job gave up, when it did
  try {
    k8s.set(view_key(static_cast<std::size_t>(membership.own_index)), own);
    while (true) {
      missing = not_joined(k8s, pods);
      const bool another_gave_up = k8s.check({kGaveUpKey});
      if (missing.empty() && !another_gave_up) break;
      if (another_gave_up) {
        // This pod may have joined after the other gave up (it started late), so it names
        // the pods that are missing now; only when none is (the last ones joined too late)
        // does it repeat what the other pod saw.
        gave_up = missing.empty() ? k8s.get(kGaveUpKey, 1s)
                                  : not_joined_message(membership, missing, start_timeout);
        break;
      }
      if (Clock::now() >= deadline) {
        gave_up = not_joined_message(membership, missing, start_timeout);
        // Every waiting pod, and every pod that joins while pod 0 lingers, reads this
        // instead of its own timeout or a lost connection.
        if (!k8s.check({kGaveUpKey})) k8s.set(kGaveUpKey, *gave_up);
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::timeout) throw;
    throw Error(ErrorKind::peer_failure,
                fmt::format("the store on {} went away while this pod waited for the others to "
                            "join (pod 0's launcher ended: see its log): {}",
                            membership.describe(0), e.what()));
  }
  if (gave_up) {
    if (membership.own_index == 0) {
      std::this_thread::sleep_for(std::clamp(start_timeout, kMinLinger, kMaxLinger));
    }
    throw Error(ErrorKind::timeout, *gave_up);
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
