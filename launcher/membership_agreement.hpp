// Before any rank starts, every pod's launcher publishes the membership it discovered into the
// store (served by pod 0) and compares it with everyone else's: pods that saw different DNS
// answers must not start a job with two different ideas of who rank 3 is.
#pragma once

#include <chrono>

#include "k8s_discovery.hpp"
#include "rendezvous/store.hpp"

namespace ringfuse::launcher {

/// Throws Error(invalid_config) naming every pod whose view differs from ours (all pods see the
/// same disagreement, so all fail), or Error(timeout) naming the pods that never published.
void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout);

}  // namespace ringfuse::launcher
