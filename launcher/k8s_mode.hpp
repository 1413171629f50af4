// ringfuse-run --k8s-service: the entrypoint of every pod of a job. Discovers the pods through
// the headless Service's DNS records, agrees on the membership through the store pod 0 hosts,
// then starts and supervises this pod's ranks.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "signal_pipe.hpp"
#include "supervisor.hpp"

namespace ringfuse::launcher {

struct K8sOptions {
  std::string service;
  std::string ns = "default";
  int np = 0;
  int nproc_per_pod = 1;
  std::optional<std::string> dns_server;
  int port = 29500;
  std::chrono::milliseconds start_timeout{60'000};
  std::map<std::string, std::string> rank_variables;  // tunables for every rank
  SupervisorOptions supervisor;
};

/// Returns ringfuse-run's exit code; throws ringfuse::Error for discovery, store or agreement
/// failures (the caller reports them).
int run_k8s(const K8sOptions& options, const std::vector<std::string>& command,
            SignalPipe& signals);

}  // namespace ringfuse::launcher
