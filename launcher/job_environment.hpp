// The environment contract of DESIGN.md §3: what every rank finds in its environment so that
// ringfuse::init() (or a torchrun-style program) can join the job.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "torch_master.hpp"

namespace ringfuse::launcher {

/// Identifies one run of ringfuse-run. The secret lets ranks refuse peers from another job
/// that happens to reach the same store or ports.
struct JobIdentity {
  std::string job_id;
  std::string job_secret;

  /// Fresh random id and secret from /dev/urandom; throws ringfuse::Error(system) if unreadable.
  static JobIdentity generate();
};

/// Whether ringfuse-run sets `name` for every rank itself (RINGFUSE_RANK, RANK, MASTER_PORT, ...).
bool is_contract_variable(std::string_view name);

/// Lowercase hex of `bytes` bytes from /dev/urandom.
std::string random_hex(std::size_t bytes);

/// Where the ranks of this launcher sit in the world. Single-host for now; the cross-* fields
/// are what a multi-host launcher will vary.
struct WorldLayout {
  int world_size = 1;
  int local_size = 1;
  int cross_rank = 0;
  int cross_size = 1;
  int first_rank = 0;  // global rank of local rank 0
};

class JobEnvironment {
 public:
  /// `inherited` is the launcher's own environment ("NAME=value" entries); the contract
  /// variables replace any same-named entries in it. `torch_master` becomes MASTER_ADDR and
  /// MASTER_PORT (torch_master.hpp).
  JobEnvironment(WorldLayout layout, std::string store_host, std::uint16_t store_port,
                 TorchMaster torch_master, JobIdentity identity,
                 std::vector<std::string> inherited);

  /// The launcher's current environment (environ), as JobEnvironment's `inherited` wants it.
  static std::vector<std::string> current_environment();

  /// Complete environment ("NAME=value" entries) for local rank `local_rank`.
  std::vector<std::string> for_local_rank(int local_rank) const;
  /// Only what ringfuse-run sets for `local_rank` (contract and extra variables): what a rank
  /// on a remote host gets on its command line.
  std::vector<std::string> assignments_for_local_rank(int local_rank) const;

  /// Sets `name` for every rank (a tunable, RINGFUSE_HOST_ADDR, ...), replacing an inherited one.
  void set_extra(const std::string& name, const std::string& value);

  const WorldLayout& layout() const noexcept { return layout_; }
  const JobIdentity& identity() const noexcept { return identity_; }
  std::string store_address() const;

 private:
  WorldLayout layout_;
  std::string store_host_;
  std::uint16_t store_port_;
  TorchMaster torch_master_;
  JobIdentity identity_;
  std::vector<std::string> inherited_;  // already stripped of contract variables
  std::vector<std::string> extra_;      // "NAME=value"
};

}  // namespace ringfuse::launcher
