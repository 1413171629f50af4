// Multi-process tests of the asynchronous engine: real ranks (engine_worker) on loopback, the
// store hosted by the test, every child under a deadline.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <thread>
#include <vector>

#include "engine/timeline.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/ringfuse.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;
using ringfuse::engine::Timeline;

using Env = std::map<std::string, std::string>;

std::vector<std::unique_ptr<Process>> start_world(int size, const std::string& mode,
                                                  std::uint16_t port, const Env& extra,
                                                  const std::string& program = ENGINE_WORKER_PATH) {
  static int job = 0;
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    Env env{{"RINGFUSE_RANK", std::to_string(rank)},
            {"RINGFUSE_SIZE", std::to_string(size)},
            {"RINGFUSE_STORE_ADDR", "127.0.0.1:" + std::to_string(port)},
            {"RINGFUSE_JOB_ID", mode + "-" + std::to_string(::getpid()) + "-" + std::to_string(job)},
            {"RINGFUSE_TIMEOUT_S", "30"}};
    for (const auto& [k, v] : extra) env[k] = v;
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{program, mode}, env));
  }
  ++job;
  return ranks;
}

std::vector<ProcessResult> run_world(int size, const std::string& mode, const Env& extra = {},
                                     const std::string& program = ENGINE_WORKER_PATH) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  auto ranks = start_world(size, mode, store.port(), extra, program);
  std::vector<ProcessResult> results;
  for (auto& rank : ranks) results.push_back(rank->wait(60s));
  return results;
}

std::string all_output(const std::vector<ProcessResult>& results) {
  std::string text;
  for (std::size_t r = 0; r < results.size(); ++r) {
    text += "--- rank " + std::to_string(r) + "\n" + results[r].output;
  }
  return text;
}

void expect_all_ok(const std::vector<ProcessResult>& results) {
  for (std::size_t r = 0; r < results.size(); ++r) {
    EXPECT_FALSE(results[r].timed_out) << "rank " << r << " hung\n" << all_output(results);
    EXPECT_EQ(results[r].exit_code, 0) << "rank " << r << "\n" << all_output(results);
    EXPECT_NE(results[r].output.find("\nok\n"), std::string::npos) << all_output(results);
  }
}

unsigned long long stat(const std::string& output, const std::string& name) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex(name + "=(\\d+)"))) return 0;
  return std::stoull(match[1]);
}

TEST(Engine, FusionOfMixedDtypesOpsAndSizes) {
  const auto results = run_world(3, "fusion", {{"RINGFUSE_FUSION_THRESHOLD", "64K"}});
  expect_all_ok(results);
  EXPECT_GT(stat(results[0].output, "fused"), 0u) << results[0].output;
  EXPECT_GT(stat(results[0].output, "hits"), 0u) << results[0].output;
  EXPECT_NE(results[0].output.find("ringfuse engine: RINGFUSE_FUSION_THRESHOLD=64K (environment)"),
            std::string::npos)
      << "rank 0 must log the effective configuration\n"
      << results[0].output;
}

// RINGFUSE_FUSION_SHM=1: fused groups of 300 KiB to 1.2 MiB all-reduced straight out of the
// ranks' shared windows (N = 3: blocks of odd sizes), every dtype, operator, scaling and fp16
// compression, three times over (the windows are reused).
TEST(Engine, FusionInSharedMemoryWindows) {
  for (const int size : {2, 3}) {
    const std::string timeline = ::testing::TempDir() + "/window_timeline." + std::to_string(size);
    const auto results = run_world(size, "fusion-large",
                                   {{"RINGFUSE_FUSION_SHM", "1"}, {"RINGFUSE_TRANSPORT", "shm"},
                                    {"RINGFUSE_LOG_LEVEL", "debug"},
                                    {"RINGFUSE_TIMELINE", timeline + ".json"}});
    expect_all_ok(results);
    for (std::size_t rank = 0; rank < results.size(); ++rank) {
      const auto& output = results[rank].output;
      EXPECT_NE(output.find("shared window of up to 131072 KiB per rank"), std::string::npos)
          << output;
      EXPECT_GT(stat(output, "fused"), 0u) << output;
      // The fused all-reduces really ran out of the windows.
      std::ifstream in(timeline + "." + std::to_string(rank) + ".json");
      std::stringstream text;
      text << in.rdbuf();
      EXPECT_NE(text.str().find("\"algorithm\":\"shared-window\""), std::string::npos)
          << text.str().substr(0, 2000);
    }
  }
}

// A fused group of host tensors is all-reduced in place, out of the tensors (issue 18); a
// tensor enqueued twice in one group is still reduced once. N = 2 and 4 (the halves and
// quarters of the group), over shared memory and TCP.
TEST(Engine, TensorEnqueuedTwiceInOneFusedGroupIsReducedOnce) {
  for (const char* transport : {"shm", "tcp"}) {
    for (const int size : {2, 4}) {
      SCOPED_TRACE(std::string(transport) + " np" + std::to_string(size));
      expect_all_ok(run_world(size, "aliased", {{"RINGFUSE_TRANSPORT", transport}}));
    }
  }
}

// A group one rank cannot reduce in place (it enqueued one tensor twice) while its peers do:
// that rank packs it and runs the peers' algorithm over the buffer, not the automatic one.
TEST(Engine, ATensorEnqueuedTwiceOnOneRankOnlyStillMatchesItsPeers) {
  for (const char* transport : {"shm", "tcp"}) {
    for (const int size : {2, 4}) {
      SCOPED_TRACE(std::string(transport) + " np" + std::to_string(size));
      expect_all_ok(run_world(size, "aliased-on-one-rank",
                              {{"RINGFUSE_TRANSPORT", transport}, {"RINGFUSE_TIMEOUT_S", "20"}}));
    }
  }
}

// Issue 18: a step's large tensors (1 MiB and more) each run alone, in place, at N = 2, 3 and
// 4, with exact sums. Joined into one group run in place they made collectives of ~100 MiB,
// slower here than one per tensor (perf/RESULTS.md, sixth session).
TEST(Engine, AStepsLargeTensorsRunAlone) {
  constexpr unsigned long long kSteps = 5;
  constexpr unsigned long long kLarge = 4;
  for (const int size : {2, 3, 4}) {
    SCOPED_TRACE("np" + std::to_string(size));
    // A long cycle: each step is taken by its flush, in one cycle.
    const auto results = run_world(size, "large-step",
                                   {{"RINGFUSE_TRANSPORT", "shm"},
                                    {"RINGFUSE_CYCLE_TIME_MS", "5000"}});
    expect_all_ok(results);
    for (const auto& result : results) {
      // The four large tensors alone, the three small ones together: five a step (more only
      // where a step's tensors were split over two cycles).
      EXPECT_GE(stat(result.output, "collectives"), (kLarge + 1) * kSteps) << result.output;
    }
  }
}

// EngineStats::collectives read as soon as a wait() returns counts the collective that
// completed it (ringfuse-perf fusion reads the fused step's counters so, step by step).
TEST(Engine, StatsReadAfterAWaitCountItsCollective) {
  expect_all_ok(run_world(2, "count-after-wait"));
}

// Issue 18: a training loop's step of 1,000 small tensors. With allreduce_view, enqueueing
// allocates nothing on the caller's thread once a step has run; with the owning allreduce(),
// what the caller allocated (each name and shape) is not freed on the engine's thread.
TEST(Engine, AStepOfSmallTensorsAllocatesNothingPerTensorAndFreesNothingOnTheEngineThread) {
  // A long cycle: each step is taken by its flush, in one cycle.
  expect_all_ok(run_world(2, "allocations", {{"RINGFUSE_CYCLE_TIME_MS", "5000"}},
                          ENGINE_STEP_WORKER_PATH));
}

// Issue 18: a fused group's Works are all done before any of them wakes a waiter or runs a
// callback, so a caller that waits on them in order is woken once.
TEST(Engine, AFusedGroupsWorksAreAllDoneWhenTheFirstCompletes) {
  for (const char* transport : {"shm", "tcp"}) {
    SCOPED_TRACE(transport);
    expect_all_ok(run_world(2, "group-wakeup",
                            {{"RINGFUSE_CYCLE_TIME_MS", "5000"}, {"RINGFUSE_TRANSPORT", transport}},
                            ENGINE_STEP_WORKER_PATH));
  }
}

// The engine's f32 average equals the blocking call's bit for bit at a world size whose
// reciprocal is not exact in f32 (issue #16.8: it used to multiply by 1/7 rounded to f32).
TEST(Engine, AverageHasTheBlockingCallsBitsAtSevenRanks) {
  const auto results = run_world(7, "avg-bits");
  expect_all_ok(results);
  EXPECT_NE(results[0].output.find("engine avg of a sum of 42 over 7 ranks: 6\n"), std::string::npos)
      << all_output(results);
}

// Integer tensors take prescale/postscale (issue #18.5): trunc(x * prescale) before the
// reduction, an average divided toward zero, then trunc(result * postscale), in fused groups
// and in place; they used to be refused.
TEST(Engine, IntegerPrescaleAndPostscaleTruncateTowardZero) {
  const auto results = run_world(3, "int-scale", {{"RINGFUSE_FUSION_THRESHOLD", "64K"}});
  expect_all_ok(results);
  EXPECT_NE(results[0].output.find("int-scale: 11 integer tensors"), std::string::npos)
      << all_output(results);
}

// i16 and bool through the engine, every operator, fused and in place (issue #18.4); the
// average of bools and a scaled bool are refused where they are enqueued.
TEST(Engine, I16AndBoolAllreduceAndTheUndefinedOnesAreRefused) {
  const auto results = run_world(3, "dtypes", {{"RINGFUSE_FUSION_THRESHOLD", "64K"}});
  expect_all_ok(results);
  EXPECT_NE(results[0].output.find("bool avg refused: rank 0: engine: tensor 'bool.avg': avg of "
                                   "bool is not defined"),
            std::string::npos)
      << all_output(results);
}

// The timeline names the algorithm the backend ran, not a guess made beside it: with
// RINGFUSE_HIERARCHICAL=1 on two "hosts" of two ranks each, every all-reduce is hierarchical.
TEST(Engine, TimelineNamesTheHierarchicalAllreduceThatRan) {
  const std::string timeline = ::testing::TempDir() + "/hierarchical_timeline";
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < 4; ++rank) {
    const Env env{{"RINGFUSE_RANK", std::to_string(rank)},
                  {"RINGFUSE_SIZE", "4"},
                  {"RINGFUSE_LOCAL_RANK", std::to_string(rank % 2)},
                  {"RINGFUSE_LOCAL_SIZE", "2"},
                  {"RINGFUSE_CROSS_RANK", std::to_string(rank / 2)},
                  {"RINGFUSE_CROSS_SIZE", "2"},
                  {"RINGFUSE_STORE_ADDR", "127.0.0.1:" + std::to_string(store.port())},
                  {"RINGFUSE_JOB_ID", "hier-timeline-" + std::to_string(::getpid())},
                  {"RINGFUSE_HIERARCHICAL", "1"},
                  {"RINGFUSE_TIMELINE", timeline + ".json"},
                  {"RINGFUSE_TIMEOUT_S", "30"}};
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{ENGINE_WORKER_PATH, "plain"}, env));
  }
  std::vector<ProcessResult> results;
  for (auto& rank : ranks) results.push_back(rank->wait(60s));
  expect_all_ok(results);
  for (int rank = 0; rank < 4; ++rank) {
    std::ifstream in(timeline + "." + std::to_string(rank) + ".json");
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_NE(text.str().find("\"algorithm\":\"hierarchical\""), std::string::npos)
        << "rank " << rank << ":\n" << text.str();
    EXPECT_EQ(text.str().find("\"algorithm\":\"tree\""), std::string::npos) << text.str();
  }
}

TEST(Engine, ResponseCacheEvictsWhenFull) {
  const auto results = run_world(2, "fusion", {{"RINGFUSE_CACHE_CAPACITY", "4"}});
  expect_all_ok(results);
  for (const auto& result : results) {
    EXPECT_GT(stat(result.output, "evictions"), 0u) << result.output;
  }
}

class Mismatch : public ::testing::TestWithParam<std::string> {};

TEST_P(Mismatch, FailsEveryRankWithOneMessage) {
  const auto results = run_world(4, "mismatch-" + GetParam());
  expect_all_ok(results);
  std::string first;
  long long last_enqueue = 0;
  for (const auto& result : results) {
    std::smatch match;
    ASSERT_TRUE(std::regex_search(result.output, match, std::regex("ENQUEUED_MS (\\d+)")))
        << all_output(results);
    last_enqueue = std::max(last_enqueue, std::stoll(match[1]));
  }
  for (std::size_t rank = 0; rank < results.size(); ++rank) {
    const auto& result = results[rank];
    std::smatch match;
    ASSERT_TRUE(std::regex_search(result.output, match, std::regex("ERROR_MS (\\d+)")));
    EXPECT_LE(std::stoll(match[1]) - last_enqueue, 2000) << all_output(results);
    // Each rank's message starts with its own rank; the rest is the same on every rank.
    const std::string prefix = "MISMATCH: rank " + std::to_string(rank) + ": ";
    const auto at = result.output.find(prefix);
    ASSERT_NE(at, std::string::npos) << all_output(results);
    const auto line =
        result.output.substr(at + prefix.size(), result.output.find('\n', at) - at - prefix.size());
    if (first.empty()) first = line;
    EXPECT_EQ(line, first) << "every rank must report the same message";
  }
  EXPECT_NE(first.find("collective #2"), std::string::npos) << first;
  EXPECT_NE(first.find("ranks {0,1,3}: "), std::string::npos) << first;
  EXPECT_NE(first.find("; rank 2: "), std::string::npos) << first;
  if (GetParam() == "shape") {
    EXPECT_NE(first.find("ranks {0,1,3}: f32[1024,512] sum; rank 2: f32[1024,511] sum"),
              std::string::npos) << first;
  }
  if (GetParam() == "dtype") {
    EXPECT_NE(first.find("rank 2: f64[1024,512] sum"), std::string::npos) << first;
  }
  if (GetParam() == "op") {
    EXPECT_NE(first.find("rank 2: f32[1024,512] max"), std::string::npos) << first;
  }
  if (GetParam() == "name") {
    EXPECT_NE(first.find("rank 2: 'layer.bias'"), std::string::npos) << first;
  }
  if (GetParam() != "name") {
    EXPECT_NE(first.find("'layer.weight'"), std::string::npos) << first;
  }
}

INSTANTIATE_TEST_SUITE_P(Engine, Mismatch, ::testing::Values("shape", "dtype", "op", "name"));

TEST(Engine, StallInspectorNamesAStoppedRank) {
  constexpr int kVictim = 1;
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  auto ranks = start_world(3, "stall", store.port(),
                           {{"RINGFUSE_STALL_TIMEOUT_S", "1"}, {"RINGFUSE_STALL_ABORT_S", "3"}});
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (ranks[kVictim]->output().find("ready") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(::kill(ranks[kVictim]->pid(), SIGSTOP), 0);
  std::vector<ProcessResult> results(3);
  for (int rank = 0; rank < 3; ++rank) {
    if (rank == kVictim) continue;
    results[rank] = ranks[rank]->wait(30s);
  }
  ::kill(ranks[kVictim]->pid(), SIGKILL);
  results[kVictim] = ranks[kVictim]->wait(10s);
  const auto text = all_output(results);
  EXPECT_NE(results[0].output.find("stall inspector"), std::string::npos)
      << "rank 0 must warn before aborting\n" << text;
  for (int rank = 0; rank < 3; ++rank) {
    if (rank == kVictim) continue;
    EXPECT_FALSE(results[rank].timed_out) << text;
    EXPECT_EQ(results[rank].exit_code, 0) << text;
    const auto at = results[rank].output.find("STALL: ");
    ASSERT_NE(at, std::string::npos) << text;
    const auto line = results[rank].output.substr(at);
    EXPECT_NE(line.find("rank 1 has not taken part"), std::string::npos) << text;
    EXPECT_NE(line.find("RINGFUSE_STALL_ABORT_S"), std::string::npos) << text;
  }
}

// The engine polls its control connections. A peer that stays quiet for longer than the
// polling tick is no failure, so afterwards every rank that shuts down in order is recorded as
// having left in order (what a peer still waiting on it reports), not as a crash. Rank 0
// enqueues 600 ms before the others, and with a 300 ms cycle time the others wait that long
// for the coordinator's answers. Over both control transports (TCP, and shared memory when
// every rank is on one host).
TEST(Engine, ControlChannelRecordsAnOrderlyCloseAfterQuietSpells) {
  for (const std::string transport : {"tcp", "shm"}) {
    SCOPED_TRACE("RINGFUSE_TRANSPORT=" + transport);
    ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
    const std::string job = "uneven-leave-" + transport + "-" + std::to_string(::getpid());
    auto ranks = start_world(2, "uneven-then-leave", store.port(),
                             {{"RINGFUSE_JOB_ID", job},
                              {"RINGFUSE_CYCLE_TIME_MS", "300"},
                              {"RINGFUSE_TRANSPORT", transport}});
    std::vector<ProcessResult> results;
    for (auto& rank : ranks) results.push_back(rank->wait(60s));
    expect_all_ok(results);
    ringfuse::rendezvous::TcpStoreClient client("127.0.0.1", store.port(), 10s);
    for (int rank = 0; rank < 2; ++rank) {
      const std::string key =
          "ringfuse/" + job + "/0/engine-control/left/" + std::to_string(rank);
      EXPECT_TRUE(client.check({key}))
          << "rank " << rank << " left in order, but its engine's control connections did not "
          << "record it (" << key << ")\n" << all_output(results);
    }
  }
}

long long stamp(const std::string& output, const std::string& key) {
  std::smatch match;
  if (!std::regex_search(output, match, std::regex(key + " (\\d+)"))) return -1;
  return std::stoll(match[1]);
}

std::string line_after(const std::string& output, const std::string& marker) {
  const auto at = output.find(marker);
  if (at == std::string::npos) return {};
  return output.substr(at, output.find('\n', at) - at);
}

TEST(Engine, CacheIndexRoundReleasesWhatEveryRankAgreesOnUnderSkew) {
  const auto results = run_world(3, "skew");
  expect_all_ok(results);
  for (const auto& result : results) {
    // Steps 2..6 are cached; the late rank splits each into at least two releases.
    EXPECT_GE(stat(result.output, "fast_cycles"), 10u) << all_output(results);
    EXPECT_EQ(stat(result.output, "misses"), 40u) << all_output(results);
  }
}

TEST(Engine, SwappedCachedTensorsFailEveryRankWithOneMessage) {
  const auto results = run_world(4, "mismatch-order");
  expect_all_ok(results);
  long long last_enqueue = 0;
  for (const auto& result : results) last_enqueue = std::max(last_enqueue, stamp(result.output, "ENQUEUED_MS"));
  std::string first;
  for (std::size_t rank = 0; rank < results.size(); ++rank) {
    const auto& result = results[rank];
    const auto error_ms = stamp(result.output, "ERROR_MS");
    ASSERT_GE(error_ms, 0) << all_output(results);
    EXPECT_LE(error_ms - last_enqueue, 2000) << all_output(results);
    // Each rank's message starts with its own rank; the rest is the same on every rank.
    const std::string marker = "MISMATCH: rank " + std::to_string(rank) + ": ";
    const auto line = line_after(result.output, marker);
    ASSERT_FALSE(line.empty()) << all_output(results);
    const auto message = line.substr(marker.size());
    if (first.empty()) first = message;
    EXPECT_EQ(message, first) << "every rank must report the same message";
  }
  EXPECT_NE(first.find("collective #5 does not match"), std::string::npos) << first;
  EXPECT_NE(first.find("ranks {0,1,3}: 'grad.a' f32[64] sum"), std::string::npos) << first;
  EXPECT_NE(first.find("rank 2: 'grad.b' f32[32] sum"), std::string::npos) << first;
}

TEST(Engine, StallInspectorNamesARankThatSkipsACachedTensor) {
  const auto results = run_world(3, "stall-missing", {{"RINGFUSE_STALL_TIMEOUT_S", "1"},
                                                      {"RINGFUSE_STALL_ABORT_S", "3"}});
  expect_all_ok(results);
  const auto text = all_output(results);
  EXPECT_NE(results[0].output.find("stall inspector"), std::string::npos)
      << "rank 0 must warn before aborting\n" << text;
  EXPECT_NE(results[0].output.find("rank 1 has not submitted collective #6 'grad.b'"),
            std::string::npos) << text;
  for (int rank : {0, 2}) {
    const auto& output = results[static_cast<std::size_t>(rank)].output;
    const auto line = line_after(output, "STALL: ");
    EXPECT_NE(line.find("rank 1 has not submitted collective #6 'grad.b' f32[32] sum"),
              std::string::npos) << text;
    EXPECT_NE(line.find("(ranks {0,2} did)"), std::string::npos) << text;
    EXPECT_NE(line.find("RINGFUSE_STALL_ABORT_S"), std::string::npos) << text;
    const auto waited = stamp(output, "ERROR_MS") - stamp(output, "ENQUEUED_MS");
    EXPECT_GE(waited, 3000) << text;
    EXPECT_LE(waited, 8000) << text;
  }
  EXPECT_NE(results[1].output.find("STALL: "), std::string::npos)
      << "the rank that skipped the tensor must learn of the abort too\n" << text;
}

TEST(Engine, JoinWithUnevenBatchCounts) {
  const auto results = run_world(3, "join");
  expect_all_ok(results);
  for (const auto& result : results) {
    EXPECT_NE(result.output.find("last joined: 2"), std::string::npos) << all_output(results);
  }
}

const Env kByName{{"RINGFUSE_MATCH", "name"}};

TEST(EngineByName, JoinWithUnevenBatchCountsReportsTheLastRank) {
  const auto results = run_world(3, "join", kByName);
  expect_all_ok(results);
  for (const auto& result : results) {
    EXPECT_NE(result.output.find("last joined: 2"), std::string::npos) << all_output(results);
  }
}

TEST(EngineByName, RanksEnqueueInDifferentOrders) {
  const auto results = run_world(3, "name-order", kByName);
  expect_all_ok(results);
  EXPECT_NE(results[0].output.find("RINGFUSE_MATCH=name (environment)"), std::string::npos)
      << results[0].output;
  for (const auto& result : results) {
    EXPECT_GT(stat(result.output, "fused"), 0u) << all_output(results);
  }
}

TEST(EngineByName, ADuplicatePendingNameIsRefusedAtEnqueue) {
  const auto results = run_world(3, "name-duplicate", kByName);
  expect_all_ok(results);
  for (int rank : {0, 1}) {
    const auto& output = results[static_cast<std::size_t>(rank)].output;
    EXPECT_NE(output.find("DUPLICATE: rank " + std::to_string(rank) +
                          ": engine: 'dup' is already pending on this rank"),
              std::string::npos) << all_output(results);
    EXPECT_NE(output.find("DUPLICATE: rank " + std::to_string(rank) +
                          ": engine: 'g' is already pending on this rank"),
              std::string::npos) << all_output(results);
  }
}

class MismatchByName : public ::testing::TestWithParam<std::string> {};

// Name mode matches by name, so the names agree; everything else is diagnosed as in sequence
// mode, with the name in place of the sequence number, and the next collective succeeds.
TEST_P(MismatchByName, FailsEveryRankWithOneMessageNamingTheTensor) {
  const auto results = run_world(4, "mismatch-" + GetParam(), kByName);
  expect_all_ok(results);
  std::string first;
  for (std::size_t rank = 0; rank < results.size(); ++rank) {
    // Each rank's message starts with its own rank; the rest is the same on every rank.
    const std::string marker = "MISMATCH: rank " + std::to_string(rank) + ": ";
    const auto line = line_after(results[rank].output, marker);
    ASSERT_FALSE(line.empty()) << all_output(results);
    const auto message = line.substr(marker.size());
    if (first.empty()) first = message;
    EXPECT_EQ(message, first) << "every rank must report the same message";
  }
  const std::string odd = GetParam() == "shape"   ? "f32[1024,511] sum"
                          : GetParam() == "dtype" ? "f64[1024,512] sum"
                                                  : "f32[1024,512] max";
  EXPECT_NE(first.find("collective 'layer.weight' does not match across ranks: ranks {0,1,3}: "
                       "f32[1024,512] sum; rank 2: " + odd),
            std::string::npos) << first;
}

INSTANTIATE_TEST_SUITE_P(Engine, MismatchByName, ::testing::Values("shape", "dtype", "op"));

TEST(EngineByName, StallInspectorNamesTheRankAndTheNameItSkipped) {
  Env env = kByName;
  env["RINGFUSE_STALL_TIMEOUT_S"] = "1";
  env["RINGFUSE_STALL_ABORT_S"] = "3";
  const auto results = run_world(3, "stall-missing", env);
  expect_all_ok(results);
  const auto text = all_output(results);
  EXPECT_NE(results[0].output.find("stall inspector"), std::string::npos)
      << "rank 0 must warn before aborting\n" << text;
  for (int rank : {0, 2}) {
    const auto line = line_after(results[static_cast<std::size_t>(rank)].output, "STALL: ");
    EXPECT_NE(line.find("rank 1 has not submitted collective 'grad.b' f32[32] sum for "),
              std::string::npos) << text;
    EXPECT_NE(line.find("(ranks {0,2} did)"), std::string::npos) << text;
  }
}

// Item 7 of issue #18: a refused argument (on every rank) leaves the engine and the names
// usable, in both modes (mismatches: the Mismatch suites' workers go on to a next collective).
TEST(Engine, RefusedArgumentsLeaveTheEngineUsable) {
  for (const auto& env : {Env{}, kByName}) {
    const auto results = run_world(3, "recover", env);
    expect_all_ok(results);
    for (const auto& result : results) {
      EXPECT_NE(result.output.find("recovered"), std::string::npos) << all_output(results);
    }
  }
}

// A minimal JSON syntax check (objects, arrays, strings, numbers, literals).
class JsonChecker {
 public:
  explicit JsonChecker(const std::string& text) : s_(text) {}
  bool valid() {
    skip();
    if (!value()) return false;
    skip();
    return i_ == s_.size();
  }

 private:
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool string() {
    if (!eat('"')) return false;
    while (i_ < s_.size() && s_[i_] != '"') i_ += s_[i_] == '\\' ? 2 : 1;
    return i_++ < s_.size();
  }
  bool value() {
    skip();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++i_;
      if (eat(close)) return true;
      do {
        if (c == '{' && !(string() && eat(':'))) return false;
        if (!value()) return false;
      } while (eat(','));
      return eat(close);
    }
    if (c == '"') return string();
    const std::size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) ||
                              s_[i_] == '-' || s_[i_] == '+' || s_[i_] == '.')) {
      ++i_;
    }
    return i_ > start;
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

TEST(Engine, HostMemoryMarkedAsACudaTensorIsRefusedWithTheReasonAndTheEngineGoesOn) {
  // Without a usable GPU (this build has no CUDA, or no device) the reason is that; with one,
  // it is that the pointer is host memory. Either way nothing reaches the engine thread.
  auto context = ringfuse::init(ringfuse::WorldSpec{}, ringfuse::Options{});
  auto& engine = context->engine();
  std::vector<float> values{1, 2, 3, 4};
  ringfuse::TensorView mislabelled{values.data(), ringfuse::DataType::f32, {4}};
  mislabelled.device = ringfuse::Device::cuda;
  try {
    engine.allreduce("grad.w", mislabelled);
    FAIL() << "a host pointer marked cuda was accepted";
  } catch (const ringfuse::Error& error) {
    EXPECT_EQ(error.kind(), ringfuse::ErrorKind::invalid_argument);
    const std::string message = error.what();
    EXPECT_NE(message.find("tensor 'grad.w'"), std::string::npos) << message;
    EXPECT_TRUE(message.find("is a CUDA tensor, but") != std::string::npos ||
                message.find("its data pointer is host memory") != std::string::npos)
        << message;
  }
  mislabelled.device = ringfuse::Device::cpu;
  engine.allreduce("grad.w", mislabelled).wait(10s);
  EXPECT_EQ(values, (std::vector<float>{1, 2, 3, 4}));
}

TEST(Engine, TimelineIsValidChromeTraceJson) {
  const std::string path = ::testing::TempDir() + "/engine_timeline.json";
  const auto results = run_world(2, "fusion", {{"RINGFUSE_TIMELINE", path},
                                               {"RINGFUSE_FUSION_THRESHOLD", "64K"}});
  expect_all_ok(results);
  for (int rank = 0; rank < 2; ++rank) {
    const std::string file = ::testing::TempDir() + "/engine_timeline." + std::to_string(rank) + ".json";
    std::ifstream in(file);
    ASSERT_TRUE(in.good()) << file;
    std::stringstream text;
    text << in.rdbuf();
    const auto json = text.str();
    EXPECT_TRUE(JsonChecker(json).valid()) << json.substr(0, 2000);
    for (const char* event : {"NEGOTIATE", "QUEUE ", "MEMCPY_IN_FUSION_BUFFER",
                              "MEMCPY_OUT_FUSION_BUFFER", "ALLREDUCE fused", "\"algorithm\":"}) {
      EXPECT_NE(json.find(event), std::string::npos) << event;
    }
  }
}

// Issue #18.6: uneven alltoall (received splits checked), uneven reducescatter, grouped
// allgather and grouped reducescatter, against references, in both matching modes.
TEST(Engine, UnevenAlltoallAndReducescatterAndGroupedCollectives) {
  for (const int size : {2, 3}) {
    for (const auto& env : {Env{}, kByName}) {
      const auto results = run_world(size, "uneven", env);
      expect_all_ok(results);
      for (const auto& result : results) {
        EXPECT_NE(result.output.find("uneven: checked"), std::string::npos) << all_output(results);
        // The grouped allgather's two tensors went in one allgatherv, and the grouped
        // reducescatter's in one reducescatter.
        EXPECT_GE(stat(result.output, "fused"), 4u) << all_output(results);
      }
    }
  }
}

// Engine::start_timeline(path, mark_cycles) / stop_timeline() at run time: valid JSON holding
// the window's collectives and cycle marks, and nothing from before or after it.
TEST(Engine, TimelineStartedAndStoppedAtRunTimeHoldsOnlyItsWindow) {
  const std::string path = ::testing::TempDir() + "/window_only_timeline.json";
  for (int rank = 0; rank < 2; ++rank) {  // a file left by an earlier run must not pass
    std::remove(Timeline::path_for_rank(path, rank).c_str());
  }
  const auto results = run_world(2, "timeline-window", {{"ENGINE_TEST_TIMELINE", path}});
  expect_all_ok(results);
  for (int rank = 0; rank < 2; ++rank) {
    const std::string file = Timeline::path_for_rank(path, rank);
    std::ifstream in(file);
    ASSERT_TRUE(in.good()) << file;
    std::stringstream text;
    text << in.rdbuf();
    const auto json = text.str();
    EXPECT_TRUE(JsonChecker(json).valid()) << json;
    for (const char* event : {"QUEUE inside.0", "QUEUE inside.2", "CYCLE_START", "NEGOTIATE"}) {
      EXPECT_NE(json.find(event), std::string::npos) << event << "\n" << json;
    }
    EXPECT_EQ(json.find("before."), std::string::npos) << json;
    EXPECT_EQ(json.find("after."), std::string::npos) << json;
  }
}

}  // namespace
