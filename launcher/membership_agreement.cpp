#include "membership_agreement.hpp"

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout) {
  const auto key = [](std::size_t pod) { return "ringfuse-run/k8s/view/" + std::to_string(pod); };
  const std::string own = membership.canonical();
  store.set(key(static_cast<std::size_t>(membership.own_index)), own);
  std::vector<std::string> keys;
  for (std::size_t pod = 0; pod < membership.pod_ips.size(); ++pod) keys.push_back(key(pod));
  store.wait(keys, timeout);  // the timeout error names the missing keys (pods)
  std::string differing;
  for (std::size_t pod = 0; pod < membership.pod_ips.size(); ++pod) {
    const std::string view = store.get(key(pod), timeout);
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
