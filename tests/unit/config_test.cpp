// The environment contract: which variables describe the world, and the errors for bad values.
#include <gtest/gtest.h>

#include <map>

#include "core/environment.hpp"
#include "ringfuse/error.hpp"

namespace {

using ringfuse::Error;
using ringfuse::ErrorKind;
using ringfuse::core::EnvLookup;

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

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

}  // namespace
