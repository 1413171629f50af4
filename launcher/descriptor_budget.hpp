// Whether the launcher can hold the file descriptors a job needs, checked before any rank is
// spawned: running out half-way leaves a job that can neither start nor be reported cleanly.
#pragma once

#include <optional>
#include <string>

namespace ringfuse::launcher {

/// What the launcher needs: per rank it supervises, the read ends of its stdout and stderr
/// pipes and its progress record (--health-port); per rank of a store it serves, that rank's
/// connection; and a reserve for everything else (listening sockets, signal pipe, health
/// server, the rsh agent's start-up).
struct DescriptorNeed {
  int supervised_ranks = 0;
  int store_clients = 0;

  long long total() const;
};

/// nullopt when `need` fits under RLIMIT_NOFILE's soft limit; else the refusal, with the
/// number needed, the limit and the `ulimit -n` advice.
std::optional<std::string> descriptor_shortfall(const DescriptorNeed& need);

}  // namespace ringfuse::launcher
