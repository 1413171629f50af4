#include "k8s_identity.hpp"

#include <arpa/inet.h>

#include <charconv>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

std::optional<int> parse_index(std::string_view digits) {
  if (digits.empty() || (digits.size() > 1 && digits.front() == '0')) return std::nullopt;
  int value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size() || value < 0) return std::nullopt;
  return value;
}

}  // namespace

std::optional<int> statefulset_ordinal(std::string_view hostname) {
  const auto dash = hostname.rfind('-');
  if (dash == std::string_view::npos || dash == 0) return std::nullopt;
  return parse_index(hostname.substr(dash + 1));
}

std::string ordinal_base(std::string_view hostname) {
  const auto dash = hostname.rfind('-');
  return std::string(dash == std::string_view::npos ? hostname : hostname.substr(0, dash));
}

PodIdentity pod_identity(const EnvGet& env, const std::string& system_hostname) {
  PodIdentity id;
  id.hostname = env("HOSTNAME").value_or(system_hostname);
  // A pod's hostname is its name; some images export HOSTNAME as the FQDN.
  if (const auto dot = id.hostname.find('.'); dot != std::string::npos) id.hostname.resize(dot);
  if (id.hostname.empty()) {
    throw Error(ErrorKind::invalid_config, "this pod has no hostname (HOSTNAME is empty)");
  }
  if (const auto ip = env("POD_IP"); ip && !ip->empty()) {
    in_addr parsed{};
    if (::inet_pton(AF_INET, ip->c_str(), &parsed) != 1) {
      throw Error(ErrorKind::invalid_config,
                  "POD_IP='" + *ip + "' is not an IPv4 address; set it from the downward API "
                  "(valueFrom.fieldRef.fieldPath: status.podIP)");
    }
    id.ip = *ip;
  }
  const auto ordinal = statefulset_ordinal(id.hostname);
  if (ordinal) id.name_base = ordinal_base(id.hostname);
  // Explicit sources first, in DESIGN.md §6's order; the first one set decides.
  static constexpr const char* kExplicitIndex[] = {
      "PET_NODE_RANK",         // PyTorchJob / torch elastic: this node's (pod's) rank
      "RANK",                  // an explicit rank given to a one-rank-per-pod job
      "JOB_COMPLETION_INDEX",  // Indexed Job
      "POD_INDEX",             // the apps.kubernetes.io/pod-index label via the downward API
  };
  std::optional<std::string> explicit_source;
  std::string explicit_text;
  for (const char* name : kExplicitIndex) {
    if (const auto value = env(name); value && !value->empty()) {
      explicit_source = name;
      explicit_text = *value;
      break;
    }
  }
  if (explicit_source) {
    const std::string& source = *explicit_source;
    const auto index = parse_index(explicit_text);
    if (!index) {
      throw Error(ErrorKind::invalid_config,
                  source + "='" + explicit_text + "' is not a pod index >= 0");
    }
    if (ordinal && *ordinal != *index) {
      throw Error(ErrorKind::invalid_config,
                  source + "=" + explicit_text + " contradicts the hostname '" + id.hostname +
                      "' (ordinal " + std::to_string(*ordinal) + ")");
    }
    if (!ordinal) {
      throw Error(ErrorKind::invalid_config,
                  source + "=" + explicit_text + " is set but the hostname '" + id.hostname +
                      "' does not end in -" + explicit_text + ", so the peers' names are "
                      "unknown; pods must be named BASE-INDEX (StatefulSet, or an Indexed Job "
                      "with subdomain set to the Service)");
    }
    id.index = index;
    id.index_source = source;
  } else if (ordinal) {
    id.index = ordinal;
    id.index_source = "StatefulSet ordinal of hostname " + id.hostname;
  } else {
    id.index_source = "position of POD_IP among the Service's sorted addresses";
  }
  return id;
}

std::string service_fqdn(const std::string& service, const std::string& ns) {
  return service + "." + ns + ".svc.cluster.local";
}

std::string pod_fqdn(const std::string& pod, const std::string& service, const std::string& ns) {
  return pod + "." + service_fqdn(service, ns);
}

}  // namespace ringfuse::launcher
