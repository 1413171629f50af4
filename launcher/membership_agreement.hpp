// Before any rank starts, every pod's launcher publishes the membership it discovered into the
// store (served by pod 0) and compares it with everyone else's: pods that saw different DNS
// answers must not start a job with two different ideas of who rank 3 is.
#pragma once

#include <chrono>

#include "k8s_discovery.hpp"
#include "rendezvous/store.hpp"

namespace ringfuse::launcher {

/// Throws Error(invalid_config) naming every pod whose view differs from ours (all pods see the
/// same disagreement, so all fail), or, after `timeout`, Error(timeout) naming the pods that
/// never published, by name (or index) and address ("trainer-3 (10.0.0.8) has not joined after
/// 60 s"), as not joined after `start_timeout` (the job's --start-timeout). The job's verdict
/// (every pod joined, or which have not) is taken once, in the store, by the first pod that
/// sees everyone joined or reaches its deadline, from the views present at that moment; every
/// other pod follows it, so a pod joining within moments of another giving up is either
/// counted or told, never started while the others give up. A pod that reads a verdict to
/// give up names the pods still missing, or, when none is, repeats the verdict (with a note
/// when it names this pod, which then came too late);
/// pod 0 keeps its store up a while longer (the start timeout, 1..10 s) so that pods
/// starting late still read it instead of a lost connection.
void agree_on_membership(rendezvous::Store& store, const Membership& membership,
                         std::chrono::milliseconds timeout,
                         std::chrono::milliseconds start_timeout);

}  // namespace ringfuse::launcher
