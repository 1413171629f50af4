// Fault injection: each test breaks a running world in one way and checks, on every surviving
// rank, both the error message (it names the rank or peer at fault) and the time it took.
// - a rank killed (SIGKILL) in the middle of a large all-reduce;
// - a rank that returns from main early, while the others are already in the next all-reduce;
// - a rank that shuts the library down (destroys its Context) and stays alive;
// - the link between two "hosts" (network namespaces joined by a veth pair) cut mid-job;
// - the early exit and the shutdown again under ringfuse-run, whose exit status and report
//   must name the failure.
// The test hosts the store and starts the ranks itself (except under ringfuse-run), so only
// the library's own failure detection is at work. Every wait is bounded: nothing can hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rendezvous/tcp_store.hpp"
#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ringfuse::testing::Process;
using ringfuse::testing::ProcessResult;
using Env = std::map<std::string, std::string>;

/// How long every surviving rank may take, after the fault, to fail with its error when the
/// peer's connection ends (kill, early exit, shutdown). RINGFUSE_TIMEOUT_S is far above it,
/// so only the detection of the closed connection can meet it.
constexpr auto kLostPeerBound = 10s;

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

/// The line of `output` with `needle`, to show in the log which message a rank gave.
std::string line_with(const std::string& output, const std::string& needle) {
  const auto at = output.find(needle);
  if (at == std::string::npos) return "(none)";
  const auto begin = output.rfind('\n', at);
  const auto end = output.find('\n', at);
  return output.substr(begin == std::string::npos ? 0 : begin + 1,
                       end == std::string::npos ? std::string::npos
                                                : end - (begin == std::string::npos ? 0 : begin + 1));
}

Env rank_env(int rank, int size, const std::string& store_addr, const std::string& job,
             const std::string& transport, int timeout_s) {
  return Env{{"RINGFUSE_RANK", std::to_string(rank)},
             {"RINGFUSE_SIZE", std::to_string(size)},
             {"RINGFUSE_STORE_ADDR", store_addr},
             {"RINGFUSE_JOB_ID", job},
             {"RINGFUSE_TRANSPORT", transport},
             {"RINGFUSE_TIMEOUT_S", std::to_string(timeout_s)}};
}

std::vector<std::unique_ptr<Process>> start_world(int size, std::uint16_t store_port,
                                                  const std::string& job,
                                                  const std::string& transport,
                                                  const std::vector<std::string>& args,
                                                  const Env& extra_env = {}) {
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < size; ++rank) {
    std::vector<std::string> argv{COLLECTIVE_CHECK_PATH};
    argv.insert(argv.end(), args.begin(), args.end());
    auto env = rank_env(rank, size, "127.0.0.1:" + std::to_string(store_port), job, transport, 60);
    for (const auto& [name, value] : extra_env) env[name] = value;
    ranks.push_back(std::make_unique<Process>(argv, env));
  }
  return ranks;
}

/// Waits until every process has printed `needle` (bounded).
bool wait_for_output(const std::vector<Process*>& processes, const std::string& needle,
                     std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    bool all = true;
    for (const auto* p : processes) all = all && p->output().find(needle) != std::string::npos;
    if (all) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

bool wait_until_running(const std::vector<std::unique_ptr<Process>>& ranks,
                        std::chrono::seconds timeout) {
  std::vector<Process*> all;
  for (const auto& rank : ranks) all.push_back(rank.get());
  return wait_for_output(all, "running", timeout);
}

/// Waits for each survivor; checks it failed with exit 3 within `bound` of `fault_at`, with a
/// message matching `names_peer`. Returns the slowest survivor's time since the fault.
double expect_survivors_fail(const std::vector<std::unique_ptr<Process>>& ranks, int victim,
                             Clock::time_point fault_at, Clock::duration bound,
                             const std::regex& names_peer, const std::string& what) {
  double slowest = 0;
  for (int rank = 0; rank < static_cast<int>(ranks.size()); ++rank) {
    if (rank == victim) continue;
    const auto result = ranks[rank]->wait(std::chrono::duration_cast<std::chrono::milliseconds>(
        bound + 20s));
    const auto after_fault = Clock::now() - fault_at;
    slowest = std::max(slowest, seconds(after_fault));
    EXPECT_FALSE(result.timed_out) << "rank " << rank << " hung:\n" << result.output;
    EXPECT_EQ(result.exit_code, 3) << "rank " << rank << ":\n" << result.output;
    EXPECT_LE(after_fault, bound) << "rank " << rank << " took " << seconds(after_fault)
                                  << " s after " << what << ":\n"
                                  << result.output;
    EXPECT_TRUE(std::regex_search(result.output, names_peer))
        << "rank " << rank << " did not report " << what << " as expected:\n"
        << result.output;
    std::cerr << fmt::format("[ timing ] rank {} failed {:.2f} s after {}: {}\n", rank,
                             seconds(after_fault), what, line_with(result.output, "ERROR"));
  }
  return slowest;
}

void expect_no_segments_left(const std::string& job) {
  // Shared-memory segments are unlinked once mapped, so no way of leaving leaves any behind.
  // Names are "ringfuse-<job>_<generation>_<channel>_r<rank>..."; matching the whole job id
  // keeps a test that runs beside this one (ctest -j) and is still setting up out of it.
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    EXPECT_EQ(entry.path().filename().string().find("ringfuse-" + job + "_"), std::string::npos)
        << "left behind: " << entry.path();
  }
}

// ---------------------------------------------------------------------------------------------
// A rank killed by SIGKILL.

// "shm": the 16 MiB all-reduces go through the peers' memory (RINGFUSE_CROSS_MEMORY_MIN's
// default), so the victim may die holding a piece, or be read from as it dies; "shm-rings":
// the same through the shared-memory rings.
class KillOneRank : public ::testing::TestWithParam<std::string> {};

TEST_P(KillOneRank, OthersFailFastNamingThePeer) {
  constexpr int kSize = 4;
  constexpr int kVictim = 2;
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  const bool rings = GetParam() == "shm-rings";
  Env env;
  if (rings) env["RINGFUSE_CROSS_MEMORY_MIN"] = "off";
  auto ranks = start_world(kSize, store.port(), "kill-test-" + GetParam(),
                           rings ? "shm" : GetParam(),
                           {"--mode", "endless", "--endless-count", std::to_string(1 << 22)},
                           env);
  ASSERT_TRUE(wait_until_running(ranks, 60s)) << ranks[0]->output();

  ASSERT_EQ(::kill(ranks[kVictim]->pid(), SIGKILL), 0);
  const auto killed_at = Clock::now();
  // The neighbours say it went without notice; the others quote them.
  expect_survivors_fail(ranks, kVictim, killed_at, kLostPeerBound,
                        std::regex("lost rank [0-9]+.*rank 2 probably exited or crashed"),
                        "the kill of rank 2");
  expect_no_segments_left("kill-test-" + GetParam());
}

INSTANTIATE_TEST_SUITE_P(Transports, KillOneRank, ::testing::Values("tcp", "shm", "shm-rings"),
                         [](const auto& info) {
                           return info.param == "shm-rings" ? std::string("shm_rings")
                                                            : info.param;
                         });

// At N = 2 over TCP every all-reduce of 32 KiB and more is one pipelined exchange
// (TcpMesh::reduce_and_return), with its own loop: a peer killed in the middle of it must
// still end the survivor fast, naming it.
TEST(KillOneRankOfTwo, OverTcpTheSurvivorFailsFastNamingThePeer) {
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  auto ranks = start_world(2, store.port(), "kill-pair-test", "tcp",
                           {"--mode", "endless", "--endless-count", std::to_string(1 << 22)});
  ASSERT_TRUE(wait_until_running(ranks, 60s)) << ranks[0]->output();

  ASSERT_EQ(::kill(ranks[1]->pid(), SIGKILL), 0);
  const auto killed_at = Clock::now();
  expect_survivors_fail(ranks, 1, killed_at, kLostPeerBound,
                        std::regex("lost rank 1.*rank 1 probably exited or crashed"),
                        "the kill of rank 1");
}

// The engine's fusion buffer in shared memory (RINGFUSE_FUSION_SHM=1): the windows are
// segments of their own, and must not outlive a killed rank either.
TEST(KillOneRankInTheEngine, FusedInSharedMemoryOthersFailFastAndNoSegmentIsLeft) {
  constexpr int kSize = 3;
  constexpr int kVictim = 1;
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  auto ranks = start_world(kSize, store.port(), "kill-window-test", "shm",
                           {"--mode", "endless", "--endless-count", std::to_string(1 << 20),
                            "--engine-tensors", "64"},
                           {{"RINGFUSE_FUSION_SHM", "1"}, {"RINGFUSE_LOG_LEVEL", "debug"}});
  ASSERT_TRUE(wait_until_running(ranks, 60s)) << ranks[0]->output();
  for (const auto& rank : ranks) {
    EXPECT_NE(rank->output().find("engine-data/: shared window of up to 131072 KiB per rank"),
              std::string::npos)
        << rank->output();
  }

  ASSERT_EQ(::kill(ranks[kVictim]->pid(), SIGKILL), 0);
  const auto killed_at = Clock::now();
  // Whichever channel notices first (negotiation, or a window barrier) names the victim.
  expect_survivors_fail(ranks, kVictim, killed_at, kLostPeerBound,
                        std::regex("lost rank [0-9]+.*rank 1 probably exited or crashed"),
                        "the kill of rank 1");
  expect_no_segments_left("kill-window-test");
}

// ---------------------------------------------------------------------------------------------
// A rank that stops taking part without crashing: it returns from main (early-exit), or it
// destroys its Context, the library's shutdown, and carries on (leave). Either way its
// transports tell the store it left in order before closing, and the others say so.

struct LeaveCase {
  std::string mode;       // collective_check --mode
  std::string transport;  // RINGFUSE_TRANSPORT
};

void PrintTo(const LeaveCase& c, std::ostream* out) { *out << c.mode << " over " << c.transport; }

std::string case_name(const ::testing::TestParamInfo<LeaveCase>& info) {
  std::string name = info.param.mode + "_" + info.param.transport;
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

constexpr int kLeaveSize = 3;
constexpr int kLeaver = 1;
// The leaver's announcement, printed once its Context is gone (leave) or just before main
// returns (early-exit).
std::string departure_line(const std::string& mode) {
  return mode == "leave" ? "destroyed its context" : "returning from main";
}

std::vector<std::string> leave_args(const std::string& mode) {
  return {"--mode", mode, "--victim", std::to_string(kLeaver), "--after", "3",
          "--endless-count", std::to_string(1 << 20), "--linger-s", "60"};
}

class LeavingRank : public ::testing::TestWithParam<LeaveCase> {};

TEST_P(LeavingRank, OthersFailFastSayingItLeft) {
  const auto& [mode, transport] = GetParam();
  const std::string job = "leave-test-" + mode + "-" + transport;
  ringfuse::rendezvous::TcpStoreServer store("127.0.0.1", 0);
  auto ranks = start_world(kLeaveSize, store.port(), job, transport, leave_args(mode));
  Process& leaver = *ranks[kLeaver];

  ASSERT_TRUE(wait_for_output({&leaver}, departure_line(mode), 60s)) << leaver.output();
  const auto left_at = Clock::now();
  if (mode == "early-exit") {
    const auto result = leaver.wait(10s);
    EXPECT_FALSE(result.timed_out) << result.output;
    EXPECT_EQ(result.exit_code, 0) << result.output;
  }
  expect_survivors_fail(ranks, kLeaver, left_at, kLostPeerBound,
                        std::regex("lost rank [0-9]+: .*rank 1 left: it shut Ringfuse down in "
                                   "order"),
                        "rank 1 left");
  if (mode == "leave") {
    // Everybody noticed while the leaver was still alive (it lingers 60 s): the shutdown
    // itself, not its process's exit, was seen. wait(0) kills it and says it was running.
    const auto result = leaver.wait(0ms);
    EXPECT_TRUE(result.timed_out) << "the leaver exited early:\n" << result.output;
    EXPECT_EQ(result.output.find("ERROR"), std::string::npos) << result.output;
  }
  expect_no_segments_left(job);
}

// Both ways of leaving, over both transports.
const auto kLeaveCases = ::testing::Values(LeaveCase{"early-exit", "tcp"},
                                           LeaveCase{"early-exit", "shm"},
                                           LeaveCase{"leave", "tcp"}, LeaveCase{"leave", "shm"});

INSTANTIATE_TEST_SUITE_P(Modes, LeavingRank, kLeaveCases, case_name);

// The same under ringfuse-run -np 3: the launcher must exit non-zero, report which rank failed
// and why, and the relayed output must name the rank that left.
class LeavingRankUnderLauncher : public ::testing::TestWithParam<LeaveCase> {};

TEST_P(LeavingRankUnderLauncher, LauncherFailsNamingTheRanks) {
  const auto& [mode, transport] = GetParam();
  std::vector<std::string> argv{RINGFUSE_RUN_PATH, "-np", std::to_string(kLeaveSize), "--",
                                COLLECTIVE_CHECK_PATH};
  const auto args = leave_args(mode);
  argv.insert(argv.end(), args.begin(), args.end());
  Process launcher(argv, Env{{"RINGFUSE_TRANSPORT", transport}, {"RINGFUSE_TIMEOUT_S", "60"}});

  ASSERT_TRUE(wait_for_output({&launcher}, departure_line(mode), 60s)) << launcher.output();
  const auto left_at = Clock::now();
  const auto result = launcher.wait(40s);
  const auto after = Clock::now() - left_at;
  std::cerr << fmt::format("[ timing ] ringfuse-run exited {:.2f} s after rank 1 left: {}\n",
                           seconds(after), line_with(result.output, "ringfuse-run:"));
  ASSERT_FALSE(result.timed_out) << result.output;
  // Status 3 is collective_check's "collective failed": a survivor's, as DESIGN.md §3 says.
  EXPECT_EQ(result.exit_code, 3) << result.output;
  EXPECT_LE(after, kLostPeerBound + 5s) << result.output;
  // The launcher's one report line names the first rank that failed (a survivor) ...
  std::smatch report;
  ASSERT_TRUE(std::regex_search(
      result.output, report,
      std::regex(R"(ringfuse-run: rank ([02]) \(host localhost, pid [0-9]+\) exited with status 3)")))
      << result.output;
  // ... and that rank's relayed error names the rank that left, and how. (The other survivor
  // may have been stopped by the launcher before it printed its own.)
  const std::string first = report[1];
  EXPECT_TRUE(std::regex_search(
      result.output,
      std::regex(fmt::format(R"(\[{0}\] rank {0}: ERROR .*lost rank [0-9]+: .*rank 1 left: it )"
                             R"(shut Ringfuse down in order)",
                             first))))
      << "rank " << first << ":\n"
      << result.output;
}

INSTANTIATE_TEST_SUITE_P(Modes, LeavingRankUnderLauncher, kLeaveCases, case_name);

// ---------------------------------------------------------------------------------------------
// A link cut between two hosts: two network namespaces joined by a veth pair (addresses from
// 10.231.0.0/24 exist only on that pair), the store and rank 0 in one, rank 1 in the other.

/// Runs `ip ARGS...`; returns its output, or nullopt on success.
std::optional<std::string> ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  const auto result = ringfuse::testing::run_process(args, {}, 10s);
  if (result.exit_code == 0 && !result.timed_out) return std::nullopt;
  return fmt::format("`{}` {}: {}", fmt::join(args, " "),
                     result.exit_code == 127 ? "could not run (is iproute2 installed?)"
                                             : "failed with status " +
                                                   std::to_string(result.exit_code),
                     result.output);
}

/// Two namespaces joined by a veth pair; removed again in every case.
class LinkedNamespaces {
 public:
  static constexpr const char* kAddress[2] = {"10.231.0.1", "10.231.0.2"};

  LinkedNamespaces() {
    const auto pid = std::to_string(::getpid());
    for (int side = 0; side < 2; ++side) {
      netns_[side] = fmt::format("rf-faults-{}-{}", pid, side);
      veth_[side] = fmt::format("rff{}{}", side, pid);  // at most 15 characters
    }
  }
  ~LinkedNamespaces() {
    // Deleting a namespace deletes the veth end in it, and with it the pair.
    for (int side = 0; side < 2; ++side) {
      if (created_[side]) (void)ip({"netns", "del", netns_[side]});
    }
  }
  LinkedNamespaces(const LinkedNamespaces&) = delete;
  LinkedNamespaces& operator=(const LinkedNamespaces&) = delete;

  /// Creates both namespaces; the reason when it cannot (no root, no CAP_NET_ADMIN, no ip).
  std::optional<std::string> create() {
    remove_stale();
    for (int side = 0; side < 2; ++side) {
      if (auto error = ip({"netns", "add", netns_[side]})) return error;
      created_[side] = true;
    }
    return std::nullopt;
  }

  /// Joins them; the reason when it cannot (veth missing from the kernel, ...).
  std::optional<std::string> link() {
    const std::vector<std::vector<std::string>> steps{
        {"-n", netns_[0], "link", "add", veth_[0], "type", "veth", "peer", "name", veth_[1],
         "netns", netns_[1]},
        {"-n", netns_[0], "addr", "add", std::string(kAddress[0]) + "/24", "dev", veth_[0]},
        {"-n", netns_[1], "addr", "add", std::string(kAddress[1]) + "/24", "dev", veth_[1]},
        {"-n", netns_[0], "link", "set", "lo", "up"},
        {"-n", netns_[1], "link", "set", "lo", "up"},
        {"-n", netns_[0], "link", "set", veth_[0], "up"},
        {"-n", netns_[1], "link", "set", veth_[1], "up"}};
    for (const auto& step : steps) {
      if (auto error = ip(step)) return error;
    }
    return std::nullopt;
  }

  std::optional<std::string> cut() { return ip({"-n", netns_[0], "link", "set", veth_[0], "down"}); }

  const std::string& netns(int side) const { return netns_[side]; }

  /// Namespaces of earlier runs that were killed before their clean-up (a CTest timeout).
  static void remove_stale() {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/run/netns", ec)) {
      const std::string name = entry.path().filename().string();
      int pid = 0;
      if (std::sscanf(name.c_str(), "rf-faults-%d-", &pid) != 1 || pid <= 0) continue;
      if (::kill(pid, 0) != 0 && errno == ESRCH) (void)ip({"netns", "del", name});
    }
  }

  /// Runs `make` on a thread that joined namespace `side`: sockets it creates live there.
  template <class Make>
  auto inside(int side, Make make) {
    decltype(make()) made;
    std::string error;
    std::thread([&] {
      const int fd = ::open(("/run/netns/" + netns_[side]).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
        error = std::string("cannot enter network namespace ") + netns_[side] + ": " +
                std::strerror(errno);
      } else {
        try {
          made = make();
        } catch (const std::exception& e) {
          error = e.what();
        }
      }
      if (fd >= 0) ::close(fd);
    }).join();
    if (!error.empty()) throw std::runtime_error(error);
    return made;
  }

 private:
  std::string netns_[2];
  std::string veth_[2];
  bool created_[2] = {false, false};
};

class LinkCut : public ::testing::TestWithParam<int> {};

TEST_P(LinkCut, BothSidesFailWithinTheTimeoutNamingThePeer) {
  const int kTimeoutS = GetParam();
  LinkedNamespaces hosts;
  if (auto why = hosts.create()) {
    GTEST_SKIP() << "cannot create network namespaces (needs root or CAP_NET_ADMIN, and "
                    "iproute2's ip): "
                 << *why;
  }
  if (auto why = hosts.link()) GTEST_SKIP() << "cannot join the namespaces with veth: " << *why;

  // The store lives in the first "host", beside rank 0.
  auto store = hosts.inside(0, [] {
    return std::make_unique<ringfuse::rendezvous::TcpStoreServer>(LinkedNamespaces::kAddress[0],
                                                                  0);
  });
  const std::string store_addr =
      fmt::format("{}:{}", LinkedNamespaces::kAddress[0], store->port());
  std::vector<std::unique_ptr<Process>> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ranks.push_back(std::make_unique<Process>(
        std::vector<std::string>{"ip", "netns", "exec", hosts.netns(rank), COLLECTIVE_CHECK_PATH,
                                 "--mode", "endless", "--endless-count",
                                 std::to_string(1 << 20)},
        rank_env(rank, 2, store_addr, "link-cut-test", "tcp", kTimeoutS)));
  }
  ASSERT_TRUE(wait_until_running(ranks, 60s))
      << "rank 0:\n" << ranks[0]->output() << "\nrank 1:\n" << ranks[1]->output();
  std::this_thread::sleep_for(200ms);  // well into the all-reduces, data in flight

  const auto cut = hosts.cut();
  ASSERT_FALSE(cut.has_value()) << *cut;
  const auto cut_at = Clock::now();
  // Nothing closes: each side only stops hearing from the other. Either RINGFUSE_TIMEOUT_S
  // without progress ends it, or, when that is longer, the sockets' TCP_USER_TIMEOUT (10 s,
  // MeshOptions::user_timeout) does; then a rank cut off from the store also spends up to the
  // store client's 5 s reply margin learning that it cannot read the first failure there.
  const auto bound = kTimeoutS < 10 ? std::chrono::seconds(kTimeoutS) + 5s : 10s + 5s + 5s;
  for (int rank = 0; rank < 2; ++rank) {
    const int peer = 1 - rank;
    const auto result = ranks[rank]->wait(bound + 20s);
    const auto after_cut = Clock::now() - cut_at;
    EXPECT_FALSE(result.timed_out) << "rank " << rank << " hung:\n" << result.output;
    EXPECT_EQ(result.exit_code, 3) << "rank " << rank << ":\n" << result.output;
    EXPECT_LE(after_cut, bound)
        << "rank " << rank << " took " << seconds(after_cut) << " s:\n"
        << result.output;
    EXPECT_TRUE(std::regex_search(
        result.output,
        std::regex(fmt::format("rank {}: ERROR .*(no progress with|lost) rank {}", rank, peer))))
        << "rank " << rank << " did not name rank " << peer << ":\n"
        << result.output;
    std::cerr << fmt::format("[ timing ] rank {} failed {:.2f} s after the link cut: {}\n",
                             rank, seconds(after_cut), line_with(result.output, "ERROR"));
  }
}

INSTANTIATE_TEST_SUITE_P(RingfuseTimeout, LinkCut, ::testing::Values(5, 60),
                         [](const auto& info) { return std::to_string(info.param) + "s"; });

}  // namespace
