#include "membership_agreement.hpp"

#include <algorithm>
#include <optional>
#include <string_view>
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
// The job's one verdict on who joined, and the counter whose first increment makes a pod the
// one that takes it (the store's add() is atomic).
constexpr const char* kVerdictKey = "verdict";
constexpr const char* kDeciderKey = "decider";
constexpr std::string_view kEveryoneJoined = "everyone joined";
// How long a pod waits for the verdict once another pod took the right to write it: that
// pod writes it a few store round trips later, unless its launcher died in between.
constexpr auto kVerdictWait = 5s;

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

// The verdict of the whole job: kEveryoneJoined, or why it gave up. Taken once, by the first
// pod that asks (every pod has joined, or its deadline passed), from the views present at
// that moment, and read by every other pod: a pod that publishes within moments of another
// pod's last look either is counted or reads that the job gave up, never starts its ranks
// while another pod gives up on it.
std::string decide(rendezvous::Store& k8s, const Membership& membership,
                   std::chrono::milliseconds start_timeout) {
  if (k8s.add(kDeciderKey, 1) == 1) {
    const auto missing = not_joined(k8s, membership.pod_ips.size());
    const std::string verdict = missing.empty()
                                    ? std::string(kEveryoneJoined)
                                    : not_joined_message(membership, missing, start_timeout);
    k8s.set(kVerdictKey, verdict);
    return verdict;
  }
  try {
    return k8s.get(kVerdictKey, kVerdictWait);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::timeout) throw;
    throw Error(ErrorKind::timeout,
                fmt::format("another pod took the job's start-up verdict but did not publish it "
                            "within {} s (its launcher ended? see the other pods' logs)",
                            std::chrono::duration_cast<std::chrono::seconds>(kVerdictWait)
                                .count()));
  }
}

}  // namespace

void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout,
                         std::chrono::milliseconds start_timeout) {
  const std::string own = membership.canonical();
  const std::size_t pods = membership.pod_ips.size();
  rendezvous::PrefixStore k8s(store, "ringfuse-run/k8s/");
  const auto deadline = Clock::now() + timeout;
  std::optional<std::string> gave_up;  // why the job gave up, when it did
  try {
    k8s.set(view_key(static_cast<std::size_t>(membership.own_index)), own);
    std::string verdict;
    while (true) {
      if (k8s.check({kVerdictKey})) {
        verdict = k8s.get(kVerdictKey, 1s);
        break;
      }
      if (not_joined(k8s, pods).empty() || Clock::now() >= deadline) {
        verdict = decide(k8s, membership, start_timeout);
        break;
      }
      std::this_thread::sleep_for(kPoll);
    }
    if (verdict != kEveryoneJoined) {
      // A pod that reached the store after the verdict names the pods missing now; when none
      // is (it, or the last pods, arrived after the verdict), it repeats the verdict, which
      // then names this pod too.
      const auto missing = not_joined(k8s, pods);
      gave_up = missing.empty() ? verdict : not_joined_message(membership, missing, start_timeout);
      const std::string self = membership.describe(static_cast<std::size_t>(membership.own_index));
      if (missing.empty() && verdict.find(self + " ") != std::string::npos) {
        *gave_up += fmt::format(" (this pod, {}, reached the store after the job had given up "
                                "on it: start the pods closer together or raise "
                                "--start-timeout)",
                                self);
      }
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
