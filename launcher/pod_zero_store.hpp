// How a pod's launcher reaches the job's store, which pod 0 serves, and what it says when it
// cannot: the failure is told in terms of pod 0 (not yet there, or gone), not of sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "k8s_discovery.hpp"
#include "rendezvous/tcp_store.hpp"

namespace ringfuse::launcher {

/// Connects to the store on pod 0 (membership.pod_ips[0]:port), retrying until `timeout`.
/// For any other pod, throws Error(timeout) naming pod 0 as not joined after `start_timeout`
/// when it never answered, and Error(peer_failure) saying that pod 0's store is gone (the job
/// gave up or finished before this pod joined) when the store was shutting down or had shut
/// down (rendezvous::StoreClosingError). Pod 0 gets the store client's errors as they are.
std::unique_ptr<rendezvous::TcpStoreClient> connect_to_pod_zero_store(
    const Membership& membership, std::uint16_t port, std::chrono::milliseconds timeout,
    const std::string& secret, std::chrono::milliseconds start_timeout);

}  // namespace ringfuse::launcher
