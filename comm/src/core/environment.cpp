#include "core/environment.hpp"

#include <array>
#include <charconv>
#include <cstdlib>

#include <fmt/format.h>

#include "core/tunables.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::core {
namespace {

[[noreturn]] void bad(const std::string& name, const std::string& value, const std::string& want) {
  throw Error(ErrorKind::invalid_config,
              fmt::format("environment variable {}='{}' is invalid: expected {}", name, value, want));
}

std::optional<long long> integer(const EnvLookup& env, const std::string& name, long long min,
                                 long long max, const std::string& want) {
  const auto value = env(name);
  if (!value) return std::nullopt;
  long long parsed = 0;
  const char* first = value->data();
  const char* last = first + value->size();
  const auto [end, error] = std::from_chars(first, last, parsed);
  if (value->empty() || error != std::errc() || end != last || parsed < min || parsed > max) {
    bad(name, *value, want);
  }
  return parsed;
}

int required_int(const EnvLookup& env, const std::string& name, long long min, long long max,
                 const std::string& want, const std::string& because) {
  const auto value = integer(env, name, min, max, want);
  if (!value) {
    throw Error(ErrorKind::invalid_config,
                fmt::format("environment variable {} is not set, but {}; expected {}", name,
                            because, want));
  }
  return static_cast<int>(*value);
}

std::pair<std::string, std::uint16_t> host_port(const std::string& name, const std::string& value) {
  const auto colon = value.rfind(':');
  if (colon == std::string::npos || colon == 0) bad(name, value, "host:port");
  const std::string port_text = value.substr(colon + 1);
  unsigned port = 0;
  const auto [end, error] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || error != std::errc() || end != port_text.data() + port_text.size() ||
      port == 0 || port > 65535) {
    bad(name, value, "host:port with a port in 1..65535");
  }
  return {value.substr(0, colon), static_cast<std::uint16_t>(port)};
}

void check_rank(const std::string& rank_name, int rank, const std::string& size_name, int size) {
  if (rank >= size) {
    throw Error(ErrorKind::invalid_config,
                fmt::format("environment variable {}={} is not below {}={}; ranks are numbered "
                            "0..{}",
                            rank_name, rank, size_name, size, size - 1));
  }
}

constexpr long long kMaxRanks = 1 << 20;

/// The names one launcher family gives to the six numbers that place a rank.
struct RankVariables {
  const char* size;
  const char* rank;
  const char* local_size;
  const char* local_rank;
  const char* cross_size;
  const char* cross_rank;
};

constexpr RankVariables kRingfuseNames{"RINGFUSE_SIZE",       "RINGFUSE_RANK",
                                       "RINGFUSE_LOCAL_SIZE", "RINGFUSE_LOCAL_RANK",
                                       "RINGFUSE_CROSS_SIZE", "RINGFUSE_CROSS_RANK"};
constexpr RankVariables kTorchrunNames{"WORLD_SIZE",       "RANK",      "LOCAL_WORLD_SIZE",
                                       "LOCAL_RANK",       "GROUP_WORLD_SIZE", "GROUP_RANK"};

// Open MPI exports no host index, so the cross rank and size keep their defaults (nullptr).
constexpr RankVariables kOpenMpiNames{"OMPI_COMM_WORLD_SIZE",       "OMPI_COMM_WORLD_RANK",
                                      "OMPI_COMM_WORLD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                      nullptr,                      nullptr};

WorldSpec parse_ranks(const EnvLookup& env, const RankVariables& names, std::string source) {
  WorldSpec world;
  world.source = std::move(source);
  const std::string because = fmt::format("{} or {} is", names.rank, names.size);
  world.size = required_int(env, names.size, 1, kMaxRanks, "a number of ranks >= 1", because);
  world.rank = required_int(env, names.rank, 0, kMaxRanks, "a rank >= 0", because);
  check_rank(names.rank, world.rank, names.size, world.size);
  world.local_size = static_cast<int>(
      integer(env, names.local_size, 1, world.size, "a number of ranks on this host >= 1")
          .value_or(world.size));
  world.local_rank = static_cast<int>(
      integer(env, names.local_rank, 0, kMaxRanks, "a rank >= 0").value_or(world.rank));
  check_rank(names.local_rank, world.local_rank, names.local_size, world.local_size);
  if (names.cross_size != nullptr) {
    world.cross_size = static_cast<int>(
        integer(env, names.cross_size, 1, world.size, "a number of hosts >= 1").value_or(1));
    world.cross_rank = static_cast<int>(
        integer(env, names.cross_rank, 0, kMaxRanks, "a host index >= 0").value_or(0));
    check_rank(names.cross_rank, world.cross_rank, names.cross_size, world.cross_size);
  }
  return world;
}

WorldSpec ringfuse_world(const EnvLookup& env) {
  WorldSpec world = parse_ranks(env, kRingfuseNames, "RINGFUSE_* variables");
  if (const auto job = env("RINGFUSE_JOB_ID"); job && !job->empty()) world.job_id = *job;
  world.job_secret = env("RINGFUSE_JOB_SECRET").value_or("");
  world.watch_launcher = env("RINGFUSE_WATCH_LAUNCHER").value_or("") == "1";
  const auto store = env("RINGFUSE_STORE_ADDR");
  if (store) {
    std::tie(world.store_host, world.store_port) = host_port("RINGFUSE_STORE_ADDR", *store);
  } else if (world.size > 1) {
    throw Error(ErrorKind::invalid_config,
                "environment variable RINGFUSE_STORE_ADDR is not set, but RINGFUSE_SIZE > 1; "
                "launch with ringfuse-run, or set it to the host:port of the rendezvous store");
  }
  return world;
}

WorldSpec torchrun_world(const EnvLookup& env) {
  WorldSpec world = parse_ranks(
      env, kTorchrunNames, "torchrun variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT)");
  if (const auto job = env("TORCHELASTIC_RUN_ID"); job && !job->empty()) world.job_id = *job;
  if (world.size > 1) {
    const auto addr = env("MASTER_ADDR");
    if (!addr || addr->empty()) {
      throw Error(ErrorKind::invalid_config,
                  "environment variable MASTER_ADDR is not set, but WORLD_SIZE > 1");
    }
    world.store_host = *addr;
    world.store_port = static_cast<std::uint16_t>(required_int(
        env, "MASTER_PORT", 1, 65535, "a port in 1..65535", "WORLD_SIZE > 1"));
    // torchrun's agent may already serve its own (c10d) store on MASTER_PORT; ours then sits
    // one port above it.
    if (env("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True") {
      if (world.store_port == 65535) bad("MASTER_PORT", "65535", "a port below 65535");
      ++world.store_port;
    }
    world.host_store = world.rank == 0;
  }
  return world;
}

/// Plain `mpirun`: rank and placement from Open MPI's variables; the store's address and the
/// job secret are settled over MPI itself when the Context is built (context/mpi_bootstrap).
WorldSpec mpirun_world(const EnvLookup& env) {
  WorldSpec world = parse_ranks(env, kOpenMpiNames, "Open MPI's OMPI_COMM_WORLD_* (plain mpirun)");
  world.mpi_bootstrap = world.size > 1;
  return world;
}

/// A launcher whose ranks Ringfuse cannot join: its variables say that this process is one
/// of several, and taken for a world of one each rank would train alone, without a word.
struct ForeignLauncher {
  const char* size;
  const char* rank;
  const char* who;
  const char* instead;  // what works in its place, beyond ringfuse-run, mpirun and torchrun
};

constexpr std::array<ForeignLauncher, 4> kForeignLaunchers{{
    // MPICH's ABI, not Open MPI's (the MPI this build bootstraps plain mpirun through).
    {"PMI_SIZE", "PMI_RANK", "an MPICH-family mpiexec (MPICH, Intel MPI) or srun's PMI", ""},
    {"MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MVAPICH's mpirun_rsh", ""},
    // srun sets SLURM_STEP_NUM_TASKS for the tasks of a step; sbatch's script has none.
    {"SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "Slurm's srun",
     "; under srun, give each task torchrun's variables (RANK=$SLURM_PROCID, "
     "WORLD_SIZE=$SLURM_NTASKS, LOCAL_RANK=$SLURM_LOCALID, LOCAL_WORLD_SIZE=<tasks per node>, "
     "MASTER_ADDR=<the first node>, MASTER_PORT=<a free port>)"},
    // ringfuse-run sets these too, always beside RINGFUSE_*, which come first.
    {"HOROVOD_SIZE", "HOROVOD_RANK", "horovodrun's Gloo mode (its rendezvous is Horovod's own)",
     ""},
}};

void refuse_foreign_launchers(const EnvLookup& env) {
  for (const auto& launcher : kForeignLaunchers) {
    const auto size = integer(env, launcher.size, 0, kMaxRanks, "a number of ranks");
    if (!size || *size <= 1) continue;
    const auto rank = env(launcher.rank);
    throw Error(ErrorKind::invalid_config,
                fmt::format("this process is rank {} of {} ({}={}, {}={}: {}), but Ringfuse "
                            "cannot join that launcher's ranks, and alone each rank would "
                            "train by itself; launch with ringfuse-run -np {} (or -H/--hostfile "
                            "for several hosts), Open MPI's mpirun, or torchrun{}. To run "
                            "this process alone on purpose, set RINGFUSE_SIZE=1 and "
                            "RINGFUSE_RANK=0",
                            rank.value_or("?"), *size, launcher.rank, rank.value_or("(unset)"),
                            launcher.size, *size, launcher.who, *size, launcher.instead));
  }
}

}  // namespace

EnvLookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* value = std::getenv(name.c_str())) return std::string(value);
    return std::nullopt;
  };
}

WorldSpec parse_world(const EnvLookup& env) {
  if (env("RINGFUSE_RANK") || env("RINGFUSE_SIZE")) return ringfuse_world(env);
  if (env("RANK") || env("WORLD_SIZE")) return torchrun_world(env);
  if (env("OMPI_COMM_WORLD_SIZE")) return mpirun_world(env);
  refuse_foreign_launchers(env);
  WorldSpec world;
  world.source = "no launcher variables: a world of one";
  return world;
}

std::optional<std::pair<std::string, std::uint16_t>> launcher_store_to_watch(
    const EnvLookup& env) {
  const auto store = env("RINGFUSE_STORE_ADDR");
  if (env("RINGFUSE_WATCH_LAUNCHER").value_or("") != "1" || !store) return std::nullopt;
  return host_port("RINGFUSE_STORE_ADDR", *store);
}

namespace {

// Walks the rows of `scope` (every row when nullopt) that `env` sets.
void apply_environment(const EnvLookup& env, Options& options,
                       std::optional<TunableScope> scope) {
  for (const auto& row : tunables()) {
    if (scope && row.scope != *scope) continue;
    const std::string name(row.variable);
    const auto value = env(name);
    if (!value) continue;
    if (const auto want = row.parse(*value, options)) bad(name, *value, *want);
  }
  if (const auto problem = inconsistency(options)) {
    throw Error(ErrorKind::invalid_config, "environment variable " + *problem);
  }
}

}  // namespace

Options parse_options(const EnvLookup& env) {
  Options options;
  apply_environment(env, options, std::nullopt);
  return options;
}

EngineConfig parse_engine_config(const EnvLookup& env) {
  Options options;
  apply_environment(env, options, TunableScope::engine);
  return options.engine;
}

}  // namespace ringfuse::core

namespace ringfuse {

std::string_view to_string(BackendKind backend) {
  switch (backend) {
    case BackendKind::automatic: return "auto";
    case BackendKind::native: return "native";
    case BackendKind::mpi: return "mpi";
    case BackendKind::nccl: return "nccl";
  }
  return "unknown";
}

}  // namespace ringfuse
