// Who this pod is in a Kubernetes job: its address, its name, and its pod index, from the
// sources DESIGN.md §6 ranks: PET_NODE_RANK or RANK when given explicitly, JOB_COMPLETION_INDEX
// (Indexed Job), POD_INDEX (the pod-index label through the downward API), then the StatefulSet
// ordinal in the hostname (trainer-2), and only then the position of its IP among the
// Service's sorted records (decided later, by discovery).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ringfuse::launcher {

using EnvGet = std::function<std::optional<std::string>(const std::string&)>;

struct PodIdentity {
  std::string hostname;             // "trainer-2"
  std::string ip;                   // POD_IP, or empty until discovery resolves our own name
  std::optional<int> index;         // known before discovery, or decided by sorted IP
  std::string index_source;         // "JOB_COMPLETION_INDEX", "StatefulSet ordinal", ...
  std::string name_base;            // "trainer": peers are name_base-0 .. name_base-(P-1)
};

/// "trainer-2" -> 2; nullopt unless the hostname ends in '-' and a decimal number without
/// leading zeros (so "trainer-7d9f8-2x4bq" from a Deployment has none).
std::optional<int> statefulset_ordinal(std::string_view hostname);

/// The part before the ordinal: "trainer-2" -> "trainer".
std::string ordinal_base(std::string_view hostname);

/// Reads POD_IP, JOB_COMPLETION_INDEX and the hostname (HOSTNAME, else gethostname()) through
/// `env`, applying the precedence above. Throws Error(invalid_config) when the sources
/// contradict each other or a value is malformed.
PodIdentity pod_identity(const EnvGet& env, const std::string& system_hostname);

/// "trainer-3.trainer.default.svc.cluster.local": a pod's DNS name under a headless Service.
std::string pod_fqdn(const std::string& pod, const std::string& service, const std::string& ns);
/// "trainer.default.svc.cluster.local": the Service's name, listing every pod's A record.
std::string service_fqdn(const std::string& service, const std::string& ns);

}  // namespace ringfuse::launcher
