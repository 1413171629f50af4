// ringfuse-run -H / --hostfile with distinct loopback addresses standing for hosts, started
// through a test rsh agent that runs the command here (as ssh would on the host).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "subprocess.hpp"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using ringfuse::testing::run_process;

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class MultiHost : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ringfuse-hosts-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    agent_ = (dir_ / "fake-rsh").string();
    std::ofstream(agent_) << "#!/bin/sh\n# fake-rsh HOST COMMAND: runs COMMAND here\n"
                             "echo \"fake-rsh on $1\" >&2\nshift\nexec /bin/sh -c \"$1\"\n";
    ::chmod(agent_.c_str(), 0755);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // ringfuse-run with `flags` on loopback "hosts" through the rsh agent, running `program`.
  ringfuse::testing::ProcessResult run_on(const std::string& hosts,
                                          const std::vector<std::string>& flags,
                                          const std::vector<std::string>& program,
                                          std::chrono::seconds timeout) {
    std::vector<std::string> argv{RINGFUSE_RUN_PATH, "-H", hosts, "--rsh-agent", agent_};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("--");
    argv.insert(argv.end(), program.begin(), program.end());
    return run_process(argv, {}, timeout);
  }

  // collective_check's all-reduce matrix on loopback "hosts" through the rsh agent.
  ringfuse::testing::ProcessResult allreduce_on(const std::string& hosts,
                                                const std::vector<std::string>& flags,
                                                const std::string& counts,
                                                const std::string& algos) {
    return run_on(hosts, flags,
                  {COLLECTIVE_CHECK_PATH, "--collective", "allreduce", "--counts", counts,
                   "--algos", algos},
                  120s);
  }

  fs::path dir_;
  std::string agent_;
};

TEST_F(MultiHost, LoopbackHostsThroughTheRshAgentUseTcp) {
  const std::string script =
      "echo place host=$RINGFUSE_HOST_ADDR cross=$RINGFUSE_CROSS_RANK/$RINGFUSE_CROSS_SIZE "
      "local=$RINGFUSE_LOCAL_RANK/$RINGFUSE_LOCAL_SIZE rank=$RINGFUSE_RANK/$RINGFUSE_SIZE; "
      "exec \"$0\" --collective allreduce --counts 1,1009 --algos ring";
  const auto r = run_on("127.0.0.2:2,127.0.0.3:2", {"--transport", "tcp"},
                        {"sh", "-c", script, COLLECTIVE_CHECK_PATH}, 90s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* line : {"[0] place host=127.0.0.2 cross=0/2 local=0/2 rank=0/4",
                           "[1] place host=127.0.0.2 cross=0/2 local=1/2 rank=1/4",
                           "[2] place host=127.0.0.3 cross=1/2 local=0/2 rank=2/4",
                           "[3] place host=127.0.0.3 cross=1/2 local=1/2 rank=3/4",
                           "[0] fake-rsh on 127.0.0.2", "[3] fake-rsh on 127.0.0.3",
                           "[3] rank 3: allreduce"}) {
    EXPECT_NE(r.output.find(line), std::string::npos) << line << "\n" << r.output;
  }
  EXPECT_EQ(r.output.find("failed, "), std::string::npos);
}

// Issue #22, item 5: "hosts" that are all loopback addresses reach the store at 127.0.0.1, so
// it listens there rather than on every address. Each rank reads the store's listening socket
// from /proc/net/tcp (address and port in hex).
TEST_F(MultiHost, LoopbackHostsKeepTheStoreOnLoopback) {
  const std::string script =
      "port=$(printf '%04X' \"${RINGFUSE_STORE_ADDR##*:}\"); "
      "awk -v p=\":$port\" '$4 == \"0A\" && substr($2, length($2) - 4) == p "
      "{ print \"store listens on \" $2 }' /proc/net/tcp";
  const auto r = run_on("127.0.0.2:1,127.0.0.3:1", {}, {"sh", "-c", script}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, "store listens on 0100007F:"), 2u)
      << "expected 127.0.0.1 (0100007F), not 0.0.0.0 (00000000)\n" << r.output;
}

// Two-level all-reduce (algo::hierarchical_allreduce), checked by collective_check over every
// dtype and operator, including counts smaller than a host's ranks.
TEST_F(MultiHost, HierarchicalAllreduceForcedUsesSharedMemoryOnEachHost) {
  const auto r = allreduce_on("127.0.0.2:2,127.0.0.3:2", {"--hierarchical", "1"},
                              "0,1,3,1009,786433", "ring,tree,rhd");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("hierarchical all-reduce (every all-reduce): 2 ranks per host over "
                          "shared memory, 2 hosts over tcp"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(count_of(r.output, " checks, 0 failed"), 4u) << r.output;
}

TEST_F(MultiHost, HierarchicalAllreduceIsAutomaticAcrossHostsAndSkipsUnevenLayouts) {
  const auto even = allreduce_on("127.0.0.2:2,127.0.0.3:2,127.0.0.4:2", {"--transport", "tcp"},
                                 "1,1009,786433", "ring");
  EXPECT_EQ(even.exit_code, 0) << even.output;
  EXPECT_NE(even.output.find("hierarchical all-reduce (all-reduces of 64 KiB and more): 2 ranks "
                             "per host over tcp, 3 hosts over tcp"),
            std::string::npos)
      << even.output;
  EXPECT_EQ(count_of(even.output, "checks, 0 failed"), 6u) << even.output;

  const auto uneven = allreduce_on("127.0.0.2:2,127.0.0.3:1", {"--hierarchical", "1"}, "1,1009",
                                   "ring");
  EXPECT_EQ(uneven.exit_code, 0) << uneven.output;
  EXPECT_NE(uneven.output.find("RINGFUSE_HIERARCHICAL=1 ignored: it needs ranks on several "
                               "hosts with the same number on each"),
            std::string::npos)
      << uneven.output;
  EXPECT_EQ(count_of(uneven.output, "checks, 0 failed"), 3u) << uneven.output;
}

TEST_F(MultiHost, HostfileFormatsAndALocalHost) {
  const auto hostfile = (dir_ / "hosts").string();
  std::ofstream(hostfile) << "# two formats and a comment\nlocalhost slots=1\n"
                             "127.0.0.3:2   # a remote host\n";
  const auto r = run_process({RINGFUSE_RUN_PATH, "--hostfile", hostfile, "--rsh-agent", agent_,
                              "--", "sh", "-c", "echo at=${RINGFUSE_HOST_ADDR:-local} $RINGFUSE_RANK/$RINGFUSE_SIZE"},
                             {}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("[0] at=local 0/3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[2] at=127.0.0.3 2/3"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("[0] fake-rsh"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[1] fake-rsh on 127.0.0.3"), std::string::npos) << r.output;
}

// torch's env:// meets where rank 0 serves a TCPStore: MASTER_ADDR is rank 0's host (by the
// name it was given when it is another host, else the address the ranks reach ours at) and
// MASTER_PORT one port for every rank, not the port of our own store.
TEST_F(MultiHost, EveryRankIsToldRankZerosHostAsTheTorchMaster) {
  const std::string script =
      "echo torch=$MASTER_ADDR:$MASTER_PORT store=${RINGFUSE_STORE_ADDR##*:}";
  const std::regex told(R"(\] torch=([^ ]+):(\d+) store=(\d+))");
  for (const auto& [hosts, master] : {std::pair<std::string, std::string>{
                                          "127.0.0.2:2,127.0.0.3:1", "127.0.0.2"},
                                      {"localhost:1,127.0.0.3:2", "127.0.0.1"}}) {
    const auto r = run_on(hosts, {}, {"sh", "-c", script}, 30s);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::set<std::string> masters;
    for (std::sregex_iterator m(r.output.begin(), r.output.end(), told), end; m != end; ++m) {
      EXPECT_EQ((*m)[1], master) << hosts << "\n" << r.output;
      EXPECT_NE((*m)[2], (*m)[3]) << "MASTER_PORT must not be our store's port\n" << r.output;
      masters.insert((*m)[1].str() + ":" + (*m)[2].str());
    }
    EXPECT_EQ(count_of(r.output, "] torch="), 3u) << r.output;
    EXPECT_EQ(masters.size(), 1u) << r.output;
  }
}

// mpirun's -x: a remote rank gets only what travels on its command line, as under ssh, whose
// remote shell starts from a clean environment (so does this agent). -x NAME=VALUE sets a value
// (quotes, spaces and '$' arrive unchanged); -x NAME passes the launcher's own.
TEST_F(MultiHost, DashXSendsVariablesToRemoteRanks) {
  const std::string clean_agent = (dir_ / "clean-rsh").string();
  std::ofstream(clean_agent) << "#!/bin/sh\nshift\nexec env -i PATH=/usr/bin:/bin /bin/sh -c \"$1\"\n";
  ::chmod(clean_agent.c_str(), 0755);
  const std::string value = "it's a \"quoted\" $HOME value";
  const auto r = run_process(
      {RINGFUSE_RUN_PATH, "-H", "localhost:1,127.0.0.3:1", "--rsh-agent", clean_agent, "-x",
       "RF_X_SET=" + value, "-x", "RF_X_PASSED", "--", "sh", "-c",
       "echo \"set=[$RF_X_SET] passed=[$RF_X_PASSED] other=[$RF_X_OTHER]\""},
      {{"RF_X_PASSED", "from the launcher"}, {"RF_X_OTHER", "not exported"}}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::string sent = "set=[" + value + "] passed=[from the launcher]";
  EXPECT_NE(r.output.find("[0] " + sent + " other=[not exported]"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("[1] " + sent + " other=[]"), std::string::npos) << r.output;
}

// A remote rank (its rsh agent) that ends before joining: the others stop waiting at once.
TEST_F(MultiHost, ARemoteRankThatEndsBeforeJoiningIsNamedAtOnce) {
  const std::string script =
      "if [ \"$RINGFUSE_RANK\" = 3 ]; then exit 0; fi; "
      "exec \"$0\" --collective allreduce --counts 1 --algos ring";
  const auto started = std::chrono::steady_clock::now();
  const auto r = run_on("127.0.0.2:2,127.0.0.3:2", {"--transport", "tcp", "--start-timeout", "60"},
                        {"sh", "-c", script, COLLECTIVE_CHECK_PATH}, 50s);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 20s) << r.output;
  EXPECT_NE(r.output.find("rank 3 exited with status 0 (pid "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(" on 127.0.0.3) before it joined"), std::string::npos) << r.output;
}

TEST_F(MultiHost, TooFewSlotsIsAClearError) {
  const auto r = run_process({RINGFUSE_RUN_PATH, "-np", "5", "-H", "127.0.0.2:2,127.0.0.3:2",
                              "--rsh-agent", agent_, "--", "true"},
                             {}, 30s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("-np 5 needs more slots than the 4"), std::string::npos) << r.output;
}

}  // namespace
