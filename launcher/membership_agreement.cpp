#include "membership_agreement.hpp"

#include "rendezvous/all_gather.hpp"
#include "rendezvous/prefix_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout) {
  const std::string own = membership.canonical();
  rendezvous::PrefixStore k8s(store, "ringfuse-run/k8s/");
  // The timeout error names the missing keys (pods).
  const auto views = rendezvous::all_gather(k8s, "view", own, membership.own_index,
                                            static_cast<int>(membership.pod_ips.size()), timeout);
  std::string differing;
  for (std::size_t pod = 0; pod < views.size(); ++pod) {
    if (views[pod] != own) differing += "\n  pod " + std::to_string(pod) + " saw " + views[pod];
  }
  if (!differing.empty()) {
    throw Error(ErrorKind::invalid_config,
                "the pods disagree on the membership; this pod (" +
                    std::to_string(membership.own_index) + ") saw " + own + differing +
                    "\n(DNS answers changed during start-up: restart the job)");
  }
}

}  // namespace ringfuse::launcher
