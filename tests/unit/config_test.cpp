// The environment contract: which variables describe the world, and the errors for bad values.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <tuple>
#include <typeinfo>

#include <fmt/format.h>

#include "core/environment.hpp"
#include "core/horovod_variables.hpp"
#include "core/tunables.hpp"
#include "engine/config.hpp"
#include "env_map.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace {

using ringfuse::Error;
using ringfuse::ErrorKind;
using ringfuse::test_support::env_of;

std::string config_error(const std::map<std::string, std::string>& vars) {
  try {
    ringfuse::core::parse_world(env_of(vars));
    ringfuse::core::parse_options(env_of(vars));
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_config);
    return e.what();
  }
  return "";
}

TEST(Environment, NoVariablesIsAWorldOfOne) {
  const auto world = ringfuse::core::parse_world(env_of({}));
  EXPECT_EQ(world.rank, 0);
  EXPECT_EQ(world.size, 1);
}

TEST(Environment, RingfuseVariablesComeFirst) {
  const auto world = ringfuse::core::parse_world(env_of({{"RINGFUSE_RANK", "2"},
                                                         {"RINGFUSE_SIZE", "4"},
                                                         {"RINGFUSE_LOCAL_RANK", "0"},
                                                         {"RINGFUSE_LOCAL_SIZE", "2"},
                                                         {"RINGFUSE_CROSS_RANK", "1"},
                                                         {"RINGFUSE_CROSS_SIZE", "2"},
                                                         {"RINGFUSE_STORE_ADDR", "10.0.0.1:29500"},
                                                         {"RINGFUSE_JOB_ID", "job7"},
                                                         {"RANK", "3"},
                                                         {"WORLD_SIZE", "8"}}));
  EXPECT_EQ(world.rank, 2);
  EXPECT_EQ(world.size, 4);
  EXPECT_EQ(world.local_rank, 0);
  EXPECT_EQ(world.local_size, 2);
  EXPECT_EQ(world.cross_rank, 1);
  EXPECT_EQ(world.store_host, "10.0.0.1");
  EXPECT_EQ(world.store_port, 29500);
  EXPECT_EQ(world.job_id, "job7");
  EXPECT_FALSE(world.host_store);
}

TEST(Environment, TorchrunVariablesMakeRankZeroHostTheStore) {
  const auto world = ringfuse::core::parse_world(env_of(
      {{"RANK", "0"}, {"WORLD_SIZE", "3"}, {"MASTER_ADDR", "localhost"}, {"MASTER_PORT", "29400"}}));
  EXPECT_EQ(world.size, 3);
  EXPECT_TRUE(world.host_store);
  EXPECT_EQ(world.store_port, 29400);
  const auto agent = ringfuse::core::parse_world(env_of({{"RANK", "1"},
                                                         {"WORLD_SIZE", "3"},
                                                         {"MASTER_ADDR", "localhost"},
                                                         {"MASTER_PORT", "29400"},
                                                         {"TORCHELASTIC_USE_AGENT_STORE", "True"}}));
  EXPECT_EQ(agent.store_port, 29401);
  EXPECT_FALSE(agent.host_store);
}

TEST(Environment, PlainMpirunBootstrapsThroughMpi) {
  const auto world = ringfuse::core::parse_world(env_of({{"OMPI_COMM_WORLD_SIZE", "4"},
                                                         {"OMPI_COMM_WORLD_RANK", "3"},
                                                         {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                                                         {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}}));
  EXPECT_EQ(world.rank, 3);
  EXPECT_EQ(world.size, 4);
  EXPECT_EQ(world.local_rank, 1);
  EXPECT_EQ(world.local_size, 2);
  EXPECT_TRUE(world.mpi_bootstrap);
}

// A launcher Ringfuse cannot join (MPICH's mpiexec, MVAPICH, srun, horovodrun's Gloo mode)
// used to give each of its ranks a world of one: N copies of the training, each alone, without
// a word.
TEST(Environment, RanksOfALauncherWeCannotJoinAreRefusedNotLeftAlone) {
  for (const auto& [size, rank, who] :
       {std::tuple{"PMI_SIZE", "PMI_RANK", "MPICH"},
        std::tuple{"MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MVAPICH"},
        std::tuple{"SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "srun"},
        std::tuple{"HOROVOD_SIZE", "HOROVOD_RANK", "horovodrun"}}) {
    const auto message = config_error({{size, "4"}, {rank, "2"}});
    EXPECT_NE(message.find(fmt::format("this process is rank 2 of 4 ({}=2, {}=4", rank, size)),
              std::string::npos)
        << message;
    EXPECT_NE(message.find(who), std::string::npos) << message;
    EXPECT_NE(message.find("ringfuse-run -np 4"), std::string::npos) << message;
    EXPECT_NE(message.find("RINGFUSE_SIZE=1 and RINGFUSE_RANK=0"), std::string::npos) << message;
    // One rank of such a launcher is a world of one indeed; and the escape hatch works.
    EXPECT_EQ(ringfuse::core::parse_world(env_of({{size, "1"}, {rank, "0"}})).size, 1);
    const auto alone = ringfuse::core::parse_world(
        env_of({{size, "4"}, {rank, "2"}, {"RINGFUSE_SIZE", "1"}, {"RINGFUSE_RANK", "0"}}));
    EXPECT_EQ(alone.size, 1);
  }
  EXPECT_NE(config_error({{"SLURM_STEP_NUM_TASKS", "4"}, {"SLURM_PROCID", "2"}})
                .find("RANK=$SLURM_PROCID, WORLD_SIZE=$SLURM_NTASKS"),
            std::string::npos);
  // A batch script's environment (sbatch: SLURM_NTASKS, but no step) is no such launcher.
  EXPECT_EQ(ringfuse::core::parse_world(env_of({{"SLURM_NTASKS", "4"}, {"SLURM_PROCID", "0"}}))
                .size,
            1);
  // ringfuse-run exports Horovod's variables beside its own, and Open MPI's mpirun wins
  // over anything else it may have inherited.
  EXPECT_EQ(ringfuse::core::parse_world(
                env_of({{"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "1"},
                        {"HOROVOD_SIZE", "2"}, {"HOROVOD_RANK", "1"}}))
                .size,
            2);
}

TEST(Environment, NonNumericSizeNamesTheVariable) {
  const auto message = config_error({{"RINGFUSE_SIZE", "abc"}, {"RINGFUSE_RANK", "0"}});
  EXPECT_NE(message.find("RINGFUSE_SIZE='abc'"), std::string::npos) << message;
}

TEST(Environment, RankNotBelowSizeIsRejected) {
  const auto message = config_error(
      {{"RINGFUSE_SIZE", "4"}, {"RINGFUSE_RANK", "4"}, {"RINGFUSE_STORE_ADDR", "127.0.0.1:1"}});
  EXPECT_NE(message.find("RINGFUSE_RANK=4 is not below RINGFUSE_SIZE=4"), std::string::npos)
      << message;
}

TEST(Environment, MissingAndMalformedValuesAreRejected) {
  EXPECT_NE(config_error({{"RINGFUSE_SIZE", "2"}}).find("RINGFUSE_RANK is not set"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_SIZE", "2"}, {"RINGFUSE_RANK", "1"}})
                .find("RINGFUSE_STORE_ADDR is not set"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_SIZE", "2"},
                          {"RINGFUSE_RANK", "1"},
                          {"RINGFUSE_STORE_ADDR", "127.0.0.1:99999"}})
                .find("RINGFUSE_STORE_ADDR"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_SIZE", "-1"}, {"RINGFUSE_RANK", "0"}}).find("RINGFUSE_SIZE"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_SIZE", "2 "}, {"RINGFUSE_RANK", "0"}}).find("RINGFUSE_SIZE"),
            std::string::npos);
  EXPECT_NE(config_error({{"RANK", "1"}, {"WORLD_SIZE", "2"}}).find("MASTER_ADDR"),
            std::string::npos);
  EXPECT_NE(config_error({{"OMPI_COMM_WORLD_SIZE", "4"}}).find("OMPI_COMM_WORLD_RANK"),
            std::string::npos);
}

TEST(Options, AlgorithmAndTimeoutsAreValidated) {
  const auto options = ringfuse::core::parse_options(
      env_of({{"RINGFUSE_ALGO", "rhd"}, {"RINGFUSE_TIMEOUT_S", "2.5"}}));
  EXPECT_EQ(options.algorithm, ringfuse::Algorithm::rhd);
  EXPECT_EQ(options.op_timeout, std::chrono::milliseconds(2500));
  EXPECT_NE(config_error({{"RINGFUSE_ALGO", "butterfly"}}).find("RINGFUSE_ALGO='butterfly'"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_TIMEOUT_S", "0"}}).find("RINGFUSE_TIMEOUT_S"),
            std::string::npos);
  EXPECT_EQ(ringfuse::core::parse_options(env_of({{"RINGFUSE_BACKEND", "mpi"}})).backend,
            ringfuse::BackendKind::mpi);
  EXPECT_NE(config_error({{"RINGFUSE_BACKEND", "gloo"}}).find("RINGFUSE_BACKEND='gloo'"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_CONNECT_TIMEOUT_S", "soon"}}).find("RINGFUSE_CONNECT_TIMEOUT_S"),
            std::string::npos);
}

TEST(Options, HierarchicalIsAutoOnOrOff) {
  const auto parse = [](const std::string& value) {
    return ringfuse::core::parse_options(env_of({{"RINGFUSE_HIERARCHICAL", value}})).hierarchical;
  };
  EXPECT_EQ(ringfuse::core::parse_options(env_of({})).hierarchical,
            ringfuse::Hierarchical::automatic);
  EXPECT_EQ(parse("1"), ringfuse::Hierarchical::on);
  EXPECT_EQ(parse("off"), ringfuse::Hierarchical::off);
  EXPECT_NE(config_error({{"RINGFUSE_HIERARCHICAL", "yes"}}).find("RINGFUSE_HIERARCHICAL='yes'"),
            std::string::npos);
}

TEST(Options, GroupFailuresEndTheJobUnlessContainIsAskedFor) {
  const auto parse = [](const std::string& value) {
    return ringfuse::core::parse_options(env_of({{"RINGFUSE_GROUP_FAILURES", value}}))
        .group_failures;
  };
  EXPECT_EQ(ringfuse::core::parse_options(env_of({})).group_failures,
            ringfuse::GroupFailures::job);
  EXPECT_EQ(parse("contain"), ringfuse::GroupFailures::contain);
  EXPECT_EQ(parse("job"), ringfuse::GroupFailures::job);
  const auto message = config_error({{"RINGFUSE_GROUP_FAILURES", "isolate"}});
  EXPECT_NE(message.find("RINGFUSE_GROUP_FAILURES='isolate'"), std::string::npos) << message;
  EXPECT_NE(message.find("one of job, contain"), std::string::npos) << message;
  EXPECT_EQ(ringfuse::core::find_tunable("RINGFUSE_GROUP_FAILURES")->flag, "--group-failures");
}

TEST(Options, FusionSizesTakeKMGSuffixesAndNameTheVariableWhenBad) {
  const auto config = ringfuse::core::parse_engine_config(
      env_of({{"RINGFUSE_FUSION_THRESHOLD", "64M"}, {"RINGFUSE_FUSION_INPLACE_MIN", "256k"}}));
  EXPECT_EQ(config.fusion_threshold, std::size_t{64} << 20);
  EXPECT_EQ(config.fusion_inplace_min, std::size_t{256} << 10);
  EXPECT_EQ(ringfuse::core::parse_engine_config(env_of({})).fusion_inplace_min,
            std::size_t{1} << 20);
  EXPECT_NE(config_error({{"RINGFUSE_FUSION_INPLACE_MIN", "1T"}})
                .find("RINGFUSE_FUSION_INPLACE_MIN='1T'"),
            std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_FUSION_THRESHOLD", "-1"}})
                .find("RINGFUSE_FUSION_THRESHOLD='-1'"),
            std::string::npos);
}

TEST(Options, FusionInSharedMemoryIsOffUnlessAskedFor) {
  const auto parse = [](const std::string& value) {
    return ringfuse::core::parse_engine_config(env_of({{"RINGFUSE_FUSION_SHM", value}}))
        .fusion_shared_memory;
  };
  EXPECT_FALSE(ringfuse::core::parse_engine_config(env_of({})).fusion_shared_memory);
  EXPECT_TRUE(parse("1"));
  EXPECT_TRUE(parse("on"));
  EXPECT_FALSE(parse("0"));
  EXPECT_NE(config_error({{"RINGFUSE_FUSION_SHM", "yes"}}).find("RINGFUSE_FUSION_SHM='yes'"),
            std::string::npos);
}

TEST(Options, MatchingIsBySequenceUnlessNameIsAskedFor) {
  EXPECT_EQ(ringfuse::core::parse_engine_config(env_of({})).match,
            ringfuse::MatchMode::sequence);
  EXPECT_EQ(ringfuse::core::parse_engine_config(env_of({{"RINGFUSE_MATCH", "name"}})).match,
            ringfuse::MatchMode::name);
  const auto message = config_error({{"RINGFUSE_MATCH", "order"}});
  EXPECT_NE(message.find("RINGFUSE_MATCH='order'"), std::string::npos) << message;
  EXPECT_NE(message.find("one of sequence, name"), std::string::npos) << message;
  EXPECT_EQ(ringfuse::core::find_tunable("RINGFUSE_MATCH")->flag, "--match");
}

TEST(Options, LogLevelHostAddressAndProgressFileAreParsedWithTheOthers) {
  const auto options = ringfuse::core::parse_options(
      env_of({{"RINGFUSE_LOG_LEVEL", "debug"},
              {"RINGFUSE_HOST_ADDR", "127.0.0.5"},
              {"RINGFUSE_PROGRESS_FILE", "/tmp/progress.0"}}));
  EXPECT_EQ(options.log_level, "debug");
  EXPECT_EQ(options.host_addr, "127.0.0.5");
  EXPECT_EQ(options.progress_file, "/tmp/progress.0");
  EXPECT_NE(config_error({{"RINGFUSE_LOG_LEVEL", "loud"}}).find("RINGFUSE_LOG_LEVEL='loud'"),
            std::string::npos);
}

// Issue #22.3: an address that is not this host's used to escape init() as a plain C++
// exception (exit 134); it is refused when the variable is read, naming it.
TEST(Options, HostAddressMustBeOneOfThisHostsAddresses) {
  for (const std::string bad : {"abc", "::1", "8.8.8.8", "", "ringfuse-no-such-host.invalid"}) {
    const auto message = config_error({{"RINGFUSE_HOST_ADDR", bad}});
    EXPECT_NE(message.find("environment variable RINGFUSE_HOST_ADDR='" + bad + "' is invalid"),
              std::string::npos)
        << bad << ": " << message;
    EXPECT_NE(message.find("of this host"), std::string::npos) << message;
  }
  EXPECT_NE(config_error({{"RINGFUSE_HOST_ADDR", "::1"}}).find("IPv6"), std::string::npos);
  EXPECT_NE(config_error({{"RINGFUSE_HOST_ADDR", "8.8.8.8"}}).find("not assigned"),
            std::string::npos);
  // A name is resolved to the address peers will be given; every 127/8 address is this host's.
  const auto host_addr = [](const std::string& value) {
    return ringfuse::core::parse_options(env_of({{"RINGFUSE_HOST_ADDR", value}})).host_addr;
  };
  EXPECT_EQ(host_addr("localhost"), "127.0.0.1");
  EXPECT_EQ(host_addr("127.0.0.2"), "127.0.0.2");
}

// RINGFUSE_SOCKETS_PER_PEER: 1..16 connections per peer (tcp_mesh.hpp's kMaxStreamsPerPeer).
TEST(Config, SocketsPerPeerIsOneToSixteen) {
  EXPECT_EQ(ringfuse::Options{}.sockets_per_peer, 1);
  for (const char* good : {"1", "4", "16"}) {
    EXPECT_EQ(ringfuse::core::parse_options(env_of({{"RINGFUSE_SOCKETS_PER_PEER", good}}))
                  .sockets_per_peer,
              std::stoi(good));
  }
  for (const char* bad : {"0", "17", "-1", "two", "4x"}) {
    const auto message = config_error({{"RINGFUSE_SOCKETS_PER_PEER", bad}});
    EXPECT_NE(message.find("RINGFUSE_SOCKETS_PER_PEER"), std::string::npos) << bad << ": " << message;
    EXPECT_NE(message.find("1..16"), std::string::npos) << bad << ": " << message;
  }
}

// RINGFUSE_SHM_LARGE_WAIT: yield (the default) or sleep; anything else names the variable.
TEST(Config, ShmLargeWaitIsYieldOrSleep) {
  EXPECT_FALSE(ringfuse::Options{}.shm_large_waits_sleep);
  EXPECT_TRUE(ringfuse::core::parse_options(env_of({{"RINGFUSE_SHM_LARGE_WAIT", "sleep"}}))
                  .shm_large_waits_sleep);
  EXPECT_FALSE(ringfuse::core::parse_options(env_of({{"RINGFUSE_SHM_LARGE_WAIT", "yield"}}))
                   .shm_large_waits_sleep);
  for (const char* bad : {"", "Sleep", "spin", "1"}) {
    const auto message = config_error({{"RINGFUSE_SHM_LARGE_WAIT", bad}});
    EXPECT_NE(message.find("RINGFUSE_SHM_LARGE_WAIT"), std::string::npos) << bad << ": " << message;
    EXPECT_NE(message.find("yield or sleep"), std::string::npos) << bad << ": " << message;
  }
}

// RINGFUSE_CROSS_MEMORY_MIN: auto (the default), off, or a positive number of bytes.
TEST(Config, CrossMemoryMinIsAutoOffOrBytes) {
  using ringfuse::Options;
  const auto parsed = [](const char* value) {
    return ringfuse::core::parse_options(env_of({{"RINGFUSE_CROSS_MEMORY_MIN", value}}))
        .cross_memory_min;
  };
  EXPECT_EQ(Options{}.cross_memory_min, Options::kCrossMemoryAuto);
  EXPECT_EQ(parsed("auto"), Options::kCrossMemoryAuto);
  EXPECT_EQ(parsed("off"), Options::kCrossMemoryOff);
  EXPECT_EQ(parsed("4M"), std::size_t{4} << 20);
  EXPECT_EQ(parsed("300000"), 300000u);
  for (const char* bad : {"", "0", "on", "-1", "4Q"}) {
    const auto message = config_error({{"RINGFUSE_CROSS_MEMORY_MIN", bad}});
    EXPECT_NE(message.find("RINGFUSE_CROSS_MEMORY_MIN"), std::string::npos)
        << bad << ": " << message;
    EXPECT_NE(message.find("auto, off or a number of bytes"), std::string::npos)
        << bad << ": " << message;
  }
}

// The table is what the parser, the start-up log and ringfuse-run --help walk: each row must
// take back what it shows as its default, and name a flag.
TEST(Tunables, EveryRowHasAFlagAndParsesItsOwnDefault) {
  const ringfuse::Options defaults;
  for (const auto& row : ringfuse::core::tunables()) {
    EXPECT_TRUE(std::string(row.flag).starts_with("--")) << row.variable;
    EXPECT_FALSE(row.help.empty()) << row.variable;
    EXPECT_EQ(ringfuse::core::find_tunable(row.variable), &row);
    const std::string shown = row.show(defaults);
    if (shown.empty()) continue;  // unset by default (timeline, host address, ...)
    ringfuse::Options parsed;
    EXPECT_EQ(row.parse(shown, parsed), std::nullopt) << row.variable << "=" << shown;
    EXPECT_EQ(row.show(parsed), shown) << row.variable;
  }
  EXPECT_NE(ringfuse::core::find_tunable("RINGFUSE_FUSION_LOOKAHEAD"), nullptr);
  EXPECT_EQ(ringfuse::core::find_tunable("RINGFUSE_FUSION_LOOKAHEAD")->flag, "--fusion-lookahead");
}

TEST(Tunables, StartUpLogShowsEveryEngineValueAndWhereItCameFrom) {
  const auto env =
      env_of({{"RINGFUSE_CYCLE_TIME_MS", "2.5"}, {"RINGFUSE_FUSION_THRESHOLD", "64K"}});
  const auto log =
      ringfuse::engine::describe_config(ringfuse::core::parse_engine_config(env), env);
  EXPECT_NE(log.find("RINGFUSE_FUSION_THRESHOLD=64K (environment)"), std::string::npos) << log;
  EXPECT_NE(log.find("RINGFUSE_CYCLE_TIME_MS=2.5 (environment)"), std::string::npos) << log;
  EXPECT_NE(log.find("RINGFUSE_FUSION_LOOKAHEAD=64 (default)"), std::string::npos) << log;
  EXPECT_NE(log.find("RINGFUSE_TIMELINE=(none) (default)"), std::string::npos) << log;
  for (const auto& row : ringfuse::core::tunables()) {
    const bool listed = log.find(std::string(row.variable) + "=") != std::string::npos;
    EXPECT_EQ(listed, row.scope == ringfuse::core::TunableScope::engine) << row.variable;
  }
}

// Values that no RINGFUSE_* variable set and that are not the default came from the code
// (Options), or, under the Horovod API, from Horovod's name for the variable: the log says which.
TEST(Tunables, StartUpLogNamesTheHorovodVariableOrTheCodeAValueCameFrom) {
  const auto env = env_of({{"HOROVOD_CYCLE_TIME", "3"}});
  auto config = ringfuse::core::parse_engine_config(
      ringfuse::core::with_horovod_variables(env));
  config.cache_capacity = 7;  // as a program's Options would
  const auto log = ringfuse::engine::describe_config(config, env);
  EXPECT_NE(log.find("RINGFUSE_CYCLE_TIME_MS=3 (HOROVOD_CYCLE_TIME)"), std::string::npos) << log;
  EXPECT_NE(log.find("RINGFUSE_CACHE_CAPACITY=7 (set in code)"), std::string::npos) << log;
  EXPECT_EQ(log.find("(Options)"), std::string::npos) << log;
}

// Sets environment variables for one test and restores them.
class ScopedEnvironment {
 public:
  explicit ScopedEnvironment(const std::map<std::string, std::string>& vars) {
    for (const auto& [name, value] : vars) {
      const char* old = std::getenv(name.c_str());
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::setenv(name.c_str(), value.c_str(), 1);
    }
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

// What init() let out for `body`: "" for a ringfuse::Error (its message in `message`), the
// exception's type for anything else.
std::string escaped_from_init(const std::function<void()>& body, std::string& message) {
  try {
    body();
  } catch (const Error& e) {
    message = e.what();
    return "";
  } catch (const std::exception& e) {
    message = e.what();
    return typeid(e).name();
  }
  return "nothing";
}

// Issue #22.3 as a user met it: rank 0 of two, a real store, and a host address that is not
// this host's. Every such value must come out of init() as a ringfuse::Error naming the
// variable, never as another exception (which, uncaught, aborted the program).
TEST(Environment, InitRefusesAHostAddressOfAnotherHostWithARingfuseError) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0, "tunables-secret");
  for (const std::string bad : {"abc", "::1", "8.8.8.8"}) {
    ScopedEnvironment env({{"RINGFUSE_RANK", "0"},
                           {"RINGFUSE_SIZE", "2"},
                           {"RINGFUSE_STORE_ADDR", "127.0.0.1:" + std::to_string(store.port())},
                           {"RINGFUSE_JOB_ID", "host-addr-" + bad},
                           {"RINGFUSE_JOB_SECRET", "tunables-secret"},
                           {"RINGFUSE_TRANSPORT", "tcp"},
                           {"RINGFUSE_CONNECT_TIMEOUT_S", "5"},
                           {"RINGFUSE_HOST_ADDR", bad}});
    std::string message;
    EXPECT_EQ(escaped_from_init([] { ringfuse::init(); }, message), "") << bad << ": " << message;
    EXPECT_NE(message.find("RINGFUSE_HOST_ADDR"), std::string::npos) << bad << ": " << message;
  }
}

// init() with hand-built Options (no environment): whatever fails below is still a
// ringfuse::Error, saying what failed.
TEST(Environment, InitLetsOnlyRingfuseErrorsOut) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0, "tunables-secret");
  ringfuse::WorldSpec world;
  world.rank = 0;
  world.size = 2;
  world.store_host = "127.0.0.1";
  world.store_port = store.port();
  world.job_id = "only-ringfuse-errors";
  world.job_secret = "tunables-secret";
  ringfuse::Options options;
  options.transport = ringfuse::TransportKind::tcp;
  options.connect_timeout = std::chrono::seconds(5);
  options.host_addr = "not-an-address";
  std::string message;
  EXPECT_EQ(escaped_from_init([&] { ringfuse::init(world, options); }, message), "") << message;
  EXPECT_NE(message.find("rank 0: init() failed"), std::string::npos) << message;
  EXPECT_NE(message.find("not-an-address"), std::string::npos) << message;
}

// A collective's Error carries which collective failed and on which backend, as fields.
TEST(Errors, CollectiveErrorsCarryTheirSequenceNumberAndBackend) {
  ringfuse::WorldSpec world;  // a world of one
  auto ctx = ringfuse::init(world, ringfuse::Options{});
  float value = 1.0f;
  ctx->allreduce(&value, 1, ringfuse::DataType::f32, ringfuse::ReduceOp::sum);
  try {
    ctx->broadcast(&value, 1, ringfuse::DataType::f32, 3);
    FAIL() << "a broadcast from root 3 in a world of one was accepted";
  } catch (const ringfuse::Error& error) {
    EXPECT_EQ(error.kind(), ringfuse::ErrorKind::invalid_argument);
    EXPECT_EQ(error.rank(), 0);
    EXPECT_EQ(error.sequence(), 2u) << error.what();
    EXPECT_EQ(error.backend(), "native") << error.what();
    EXPECT_NE(std::string(error.what()).find("rank 0: broadcast f32[1] root 3 (collective #2)"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
