// Finds the job's pods through the headless Service's DNS records and decides the membership
// (pod index -> IP). The rules live in evaluate_discovery(), a pure function of one round of
// DNS answers, so they are unit-tested without DNS; discover_pods() repeats rounds with backoff
// and jitter until the membership is complete, an error is certain, or the deadline passes.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "dns_resolver.hpp"
#include "k8s_identity.hpp"

namespace ringfuse::launcher {

struct Membership {
  std::vector<std::string> pod_ips;    // index -> address; [0] hosts the store
  std::vector<std::string> pod_names;  // index -> "trainer-3" when pods have ordinals; else empty
  int own_index = 0;
  /// "0=10.0.0.5,1=10.0.0.7": what every pod must agree on.
  std::string canonical() const;
  /// How messages name pod `index`: "trainer-3 (10.0.0.8)", or "pod 3 (10.0.0.8)" when pods
  /// are told apart by address only.
  std::string describe(std::size_t index) const;
};

/// One round of answers.
struct DiscoveryRound {
  DnsAnswer service;               // the Service's name: every pod's A record
  std::vector<DnsAnswer> by_name;  // name mode: answer for name_base-k, k = 0..pods-1; else empty
};

struct DiscoveryVerdict {
  enum class Kind { complete, waiting, fatal };
  Kind kind = Kind::waiting;
  Membership membership;      // complete
  std::vector<int> missing;   // waiting, name mode: indices whose names do not resolve yet
  std::string message;        // waiting: what is missing; fatal: the error
};

struct DiscoverySpec {
  std::string service;
  std::string ns = "default";
  int pods = 1;
};

/// Applies the membership rules to one round:
/// - name mode (the pod has an index): each name_base-k must resolve to exactly one address
///   (two: a duplicate ordinal, fatal), the addresses must be distinct, our own name must give
///   POD_IP (else waiting: a stale record of a restarted pod), and the Service must list no
///   address beyond those pods (fatal: peers beyond N).
/// - address mode: the Service lists exactly `pods` addresses (more: fatal) including ours
///   (else waiting), and our index is our position among them.
DiscoveryVerdict evaluate_discovery(const DiscoverySpec& spec, const PodIdentity& self,
                                    const DiscoveryRound& round);

/// Resolves until complete; reports progress through `progress` whenever it changes (and at
/// least every 5 s). Throws Error(invalid_config) on a fatal verdict and Error(timeout) at
/// `deadline`, naming what is missing.
Membership discover_pods(const DiscoverySpec& spec, const PodIdentity& self, DnsResolver& dns,
                         std::chrono::steady_clock::time_point deadline,
                         const std::function<void(const std::string&)>& progress);

}  // namespace ringfuse::launcher
