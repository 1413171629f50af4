// Runs the real ringfuse-run binary on small shell commands and checks what a user sees: the
// rank prefixes, the environment contract, and the exit-status contract of DESIGN.md §3.
// Every run has a hard wall-clock limit so a broken launcher fails the test instead of hanging.
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct RunResult {
  int exit_code = -1;  // 128+signal if the launcher itself died of a signal
  bool timed_out = false;
  std::string out;
  std::string err;
  std::chrono::duration<double> elapsed{};
};

/// Sends `signal` to the launcher once its stdout contains `needle` `count` times.
struct SignalTrigger {
  std::string needle;
  int count;
  int signal;
};

std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

RunResult run_launcher(const std::vector<std::string>& args,
                       const std::vector<std::string>& extra_env = {},
                       std::optional<SignalTrigger> trigger = std::nullopt,
                       std::chrono::seconds limit = 60s,
                       std::chrono::milliseconds nonblocking_reader_late_by = 0ms) {
  std::vector<std::string> argv_strings{RINGFUSE_RUN_PATH};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2 failed";
    return {};
  }
  if (nonblocking_reader_late_by > 0ms) {
    // As a Node.js parent hands its pipes over: O_NONBLOCK, and a reader that is behind.
    ::fcntl(out_pipe[1], F_SETFL, ::fcntl(out_pipe[1], F_GETFL) | O_NONBLOCK);
  }
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(126);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  std::this_thread::sleep_for(nonblocking_reader_late_by);

  RunResult result;
  bool triggered = false;
  std::vector<pollfd> fds{{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[] = {&result.out, &result.err};
  const auto deadline = start + limit;
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
    if (trigger && !triggered &&
        occurrences(result.out, trigger->needle) >= static_cast<std::size_t>(trigger->count)) {
      triggered = true;
      ::kill(pid, trigger->signal);
    }
  }
  for (auto& fd : fds) {
    if (fd.fd >= 0) ::close(fd.fd);
  }
  // The pipes can only close early if the launcher closed its stdout/stderr; bound the wait.
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (Clock::now() > deadline) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
    }
    std::this_thread::sleep_for(10ms);
  }
  result.elapsed = Clock::now() - start;
  result.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  return result;
}

// Runs the launcher with `args` expecting a usage error: exit 2, with each of `mentions` in
// what it wrote to stderr.
void expect_usage_error(const std::vector<std::string>& args,
                        const std::vector<std::string>& mentions) {
  const auto r = run_launcher(args);
  ASSERT_FALSE(r.timed_out) << "ringfuse-run " << args.front() << " ... did not exit";
  EXPECT_EQ(r.exit_code, 2) << r.err;
  for (const auto& mention : mentions) {
    EXPECT_NE(r.err.find(mention), std::string::npos) << mention << " missing from\n" << r.err;
  }
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> sh(int np, const std::string& script) {
  return {"-np", std::to_string(np), "--", "/bin/sh", "-c", script};
}

// Collects the numbers printed after `tag` (e.g. "pid=123"), from every line.
std::vector<pid_t> pids_tagged(const std::string& text, const std::string& tag) {
  std::vector<pid_t> pids;
  const std::regex pattern(tag + "=([0-9]+)");
  for (std::sregex_iterator it(text.begin(), text.end(), pattern), end; it != end; ++it) {
    pids.push_back(static_cast<pid_t>(std::stoi((*it)[1])));
  }
  return pids;
}

bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  // A zombie waiting for init to reap it is gone for our purposes.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close_paren = content.rfind(')');
  return close_paren != std::string::npos && content.size() > close_paren + 2 &&
         content[close_paren + 2] == 'Z';
}

void expect_all_gone(const std::vector<pid_t>& pids) {
  for (const pid_t pid : pids) {
    const auto until = Clock::now() + 3s;
    while (!process_gone(pid) && Clock::now() < until) std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(process_gone(pid)) << "process " << pid << " outlived ringfuse-run";
    if (!process_gone(pid)) ::kill(pid, SIGKILL);
  }
}

// A scratch directory the ranks of one test use to tell each other they are ready, so that
// a failing rank fails only once the others are really running (no timing guesses).
class ScratchDir {
 public:
  ScratchDir() {
    char name[] = "/tmp/ringfuse-launcher-test-XXXXXX";
    if (::mkdtemp(name) != nullptr) path_ = name;
  }
  ~ScratchDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

  /// Shell: say this rank is ready.
  std::string mark_ready() const { return "touch " + path_ + "/ready.$RINGFUSE_RANK; "; }
  /// Shell: wait (at most ~10 s) until `count` ranks said they are ready.
  std::string await_ready(int count) const {
    return "i=0; while [ $(ls " + path_ + " | wc -l) -lt " + std::to_string(count) +
           " ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; ";
  }
  /// Shell: a rank that waits a long time, with a grandchild holding its pipes, and says who
  /// they are.
  std::string sleeper() const {
    return "sleep 30 & echo \"child=$!\"; echo \"shell=$$\"; echo ready; " + mark_ready() +
           "wait";
  }

 private:
  std::string path_;
};

TEST(Launcher, PrefixesEveryLineWithItsRank) {
  const auto r = run_launcher(
      sh(3, "echo \"hello from $RINGFUSE_RANK\"; echo \"oops $RINGFUSE_RANK\" >&2"));
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto out = lines_of(r.out);
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, (std::vector<std::string>{"[0] hello from 0", "[1] hello from 1",
                                           "[2] hello from 2"}));
  auto err = lines_of(r.err);
  std::sort(err.begin(), err.end());
  EXPECT_EQ(err, (std::vector<std::string>{"[0] oops 0", "[1] oops 1", "[2] oops 2"}));
}

TEST(Launcher, KeepsLinesWholeAndFlushesAPartialLastLine) {
  const auto r = run_launcher(sh(2, "printf 'a\\nb'; sleep 0.2; printf 'c\\nlast'"));
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  for (const std::string rank : {"0", "1"}) {
    const std::string p = "[" + rank + "] ";
    const auto out = lines_of(r.out);
    std::vector<std::string> mine;
    std::copy_if(out.begin(), out.end(), std::back_inserter(mine),
                 [&](const std::string& l) { return l.starts_with(p); });
    EXPECT_EQ(mine, (std::vector<std::string>{p + "a", p + "bc", p + "last"}));
  }
}

// A stdout that is non-blocking (O_NONBLOCK belongs to the pipe, which the parent shares) and
// full is waited for, as a blocking one is: every line arrives and the ranks are not told the
// reader went away (before: 1,228 of 10,002 lines, and rank 0 died of a broken pipe).
TEST(Launcher, ANonBlockingStdoutThatIsFullIsWaitedFor) {
  const auto r = run_launcher(
      sh(2, "i=0; while [ $i -lt 3000 ]; do echo \"line $i of enough output to fill a pipe\"; "
            "i=$((i+1)); done; echo end"),
      {}, std::nullopt, 60s, 1000ms);
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const auto out = lines_of(r.out);
  EXPECT_EQ(out.size(), 2u * 3001u) << r.err;
  EXPECT_EQ(std::count(out.begin(), out.end(), "[0] end"), 1);
  EXPECT_EQ(std::count(out.begin(), out.end(), "[1] end"), 1);
}

TEST(Launcher, TimestampsFollowTheRankPrefix) {
  const auto r = run_launcher({"--timestamp", "-np", "1", "--", "/bin/echo", "hi"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(
      r.out, std::regex(R"(\[0\] \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z hi\n)")))
      << r.out;
}

TEST(Launcher, SetsTheEnvironmentContract) {
  const std::string script =
      "echo \"$RINGFUSE_RANK $RINGFUSE_SIZE $RINGFUSE_LOCAL_RANK $RINGFUSE_LOCAL_SIZE "
      "$RINGFUSE_CROSS_RANK $RINGFUSE_CROSS_SIZE $RINGFUSE_STORE_ADDR $RINGFUSE_JOB_ID "
      "$RINGFUSE_JOB_SECRET $RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $GROUP_RANK "
      "$GROUP_WORLD_SIZE $MASTER_ADDR $MASTER_PORT $LAUNCHER_TEST_INHERITED\"";
  // A stale contract variable in the launcher's environment must not leak through.
  const auto r = run_launcher(sh(4, script), {"LAUNCHER_TEST_INHERITED=kept", "RANK=99"});
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto out = lines_of(r.out);
  ASSERT_EQ(out.size(), 4u) << r.out;
  std::set<int> ranks;
  std::set<std::string> job_ids, secrets, stores, masters;
  const std::regex hex("[0-9a-f]{16,}");
  for (const auto& line : out) {
    std::istringstream in(line);
    std::string prefix, store, job_id, secret, master_addr, inherited;
    int rank, size, local_rank, local_size, cross_rank, cross_size, t_rank, world, t_local,
        local_world, group_rank, group_world, master_port;
    in >> prefix >> rank >> size >> local_rank >> local_size >> cross_rank >> cross_size >>
        store >> job_id >> secret >> t_rank >> world >> t_local >> local_world >> group_rank >>
        group_world >> master_addr >> master_port >> inherited;
    ASSERT_TRUE(in) << line;
    EXPECT_EQ(prefix, std::string("[").append(std::to_string(rank)).append("]"));
    ranks.insert(rank);
    EXPECT_EQ(size, 4);
    EXPECT_EQ(local_rank, rank);
    EXPECT_EQ(local_size, 4);
    EXPECT_EQ(cross_rank, 0);
    EXPECT_EQ(cross_size, 1);
    EXPECT_EQ(t_rank, rank);
    EXPECT_EQ(world, 4);
    EXPECT_EQ(t_local, rank);
    EXPECT_EQ(local_world, 4);
    EXPECT_EQ(group_rank, 0);
    EXPECT_EQ(group_world, 1);
    EXPECT_EQ(master_addr, "127.0.0.1");
    EXPECT_GT(master_port, 0);
    EXPECT_TRUE(store.starts_with("127.0.0.1:")) << store;
    // MASTER_PORT is where rank 0 serves torch's TCPStore (env://): never our own store.
    EXPECT_NE(store, "127.0.0.1:" + std::to_string(master_port));
    masters.insert(master_addr + ":" + std::to_string(master_port));
    EXPECT_TRUE(std::regex_match(job_id, hex)) << job_id;
    EXPECT_TRUE(std::regex_match(secret, hex)) << secret;
    EXPECT_EQ(inherited, "kept");
    job_ids.insert(job_id);
    secrets.insert(secret);
    stores.insert(store);
  }
  EXPECT_EQ(ranks, (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(job_ids.size(), 1u);
  EXPECT_EQ(secrets.size(), 1u);
  EXPECT_EQ(stores.size(), 1u);
  EXPECT_EQ(masters.size(), 1u);
}

TEST(Launcher, DashXIsCheckedBeforeAnyRankStarts) {
  for (const auto& [spec, says] : std::vector<std::pair<std::string, std::string>>{
           {"1BAD=x", "'1BAD' is not an environment variable's name"},
           {"RANK=3", "ringfuse-run sets RANK for each rank itself"},
           {"LAUNCHER_TEST_UNSET", "LAUNCHER_TEST_UNSET is not set in ringfuse-run's environment; "
                                   "set it, or give -x LAUNCHER_TEST_UNSET=VALUE"}}) {
    const auto r = run_launcher({"-np", "1", "-x", spec, "--", "/bin/echo", "started"});
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.out.find("started"), std::string::npos) << r.out;
  }
  // Repeated, and each takes one value: the program after them is still the program.
  const auto r = run_launcher({"-np", "1", "-x", "A_X=1", "-xB_X=2", "/bin/sh", "-c",
                               "echo $A_X$B_X"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[0] 12\n");
}

TEST(Launcher, SetsHorovodVariablesLikeHorovodrun) {
  const std::string script =
      "echo \"$HOROVOD_RANK $HOROVOD_SIZE $HOROVOD_LOCAL_RANK $HOROVOD_LOCAL_SIZE "
      "$HOROVOD_CROSS_RANK $HOROVOD_CROSS_SIZE\"";
  // A stale value from an enclosing job must not leak through.
  const auto r = run_launcher(sh(3, script), {"HOROVOD_RANK=99"});
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto out = lines_of(r.out);
  std::sort(out.begin(), out.end());
  EXPECT_EQ(out, (std::vector<std::string>{"[0] 0 3 0 3 0 1", "[1] 1 3 1 3 0 1",
                                           "[2] 2 3 2 3 0 1"}));
}

TEST(Launcher, EachJobGetsItsOwnIdAndSecret) {
  const auto a = run_launcher(sh(1, "echo \"$RINGFUSE_JOB_ID $RINGFUSE_JOB_SECRET\""));
  const auto b = run_launcher(sh(1, "echo \"$RINGFUSE_JOB_ID $RINGFUSE_JOB_SECRET\""));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(a.out, b.out);
}

TEST(Launcher, FirstFailureStopsTheOthersAndDecidesTheExitCode) {
  ScratchDir dir;
  const auto r = run_launcher(sh(4, "if [ \"$RINGFUSE_RANK\" = 2 ]; then " + dir.await_ready(3) +
                                        "exit 3; fi; " + dir.sleeper()));
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_LT(r.elapsed, 10s);
  const std::regex report(
      R"(ringfuse-run: rank 2 \(host localhost, pid [0-9]+\) exited with status 3; stopped the other 3 ranks)");
  EXPECT_TRUE(std::regex_search(r.err, report)) << r.err;
  // Exactly one report line: the other ranks' SIGTERM deaths are consequences, not causes.
  EXPECT_EQ(occurrences(r.err, "ringfuse-run:"), 1u) << r.err;
  const auto shells = pids_tagged(r.out, "shell");
  const auto children = pids_tagged(r.out, "child");
  EXPECT_EQ(shells.size(), 3u) << r.out;
  EXPECT_EQ(children.size(), 3u) << r.out;
  expect_all_gone(shells);
  expect_all_gone(children);
}

TEST(Launcher, RankKilledBySignalGives128PlusSignal) {
  ScratchDir dir;
  const auto r = run_launcher(sh(2, "if [ \"$RINGFUSE_RANK\" = 1 ]; then " + dir.await_ready(1) +
                                        "kill -9 $$; fi; " + dir.sleeper()));
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 128 + 9) << r.err;
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_TRUE(std::regex_search(
      r.err, std::regex(R"(rank 1 \(host localhost, pid [0-9]+\) was killed by signal 9 \(Killed\); stopped the other 1 rank)")))
      << r.err;
  const auto shells = pids_tagged(r.out, "shell");
  EXPECT_EQ(shells.size(), 1u) << r.out;
  expect_all_gone(shells);
  expect_all_gone(pids_tagged(r.out, "child"));
}

TEST(Launcher, LeftoverBackgroundProcessesAreStoppedOnSuccess) {
  const auto r = run_launcher(sh(2, "sleep 30 & echo \"child=$!\"; exit 0"));
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(r.elapsed, 10s);
  const auto children = pids_tagged(r.out, "child");
  EXPECT_EQ(children.size(), 2u) << r.out;
  expect_all_gone(children);
}

TEST(Launcher, ForwardsSigtermToEveryRank) {
  ScratchDir dir;
  const auto r = run_launcher(sh(3, dir.sleeper()), {}, SignalTrigger{"ready", 3, SIGTERM});
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.err;
  EXPECT_LT(r.elapsed, 10s);
  EXPECT_NE(r.err.find("received SIGTERM"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("was killed by signal 15"), std::string::npos) << r.err;
  expect_all_gone(pids_tagged(r.out, "shell"));
  expect_all_gone(pids_tagged(r.out, "child"));
}

TEST(Launcher, RanksThatIgnoreSigtermAreKilledAfterTheGracePeriod) {
  // Rank 0 fails only once rank 1 has trapped SIGTERM.
  ScratchDir dir;
  const std::string stubborn =
      "trap '' TERM; if [ \"$RINGFUSE_RANK\" = 0 ]; then " + dir.await_ready(1) +
      "exit 5; fi; echo \"shell=$$\"; " + dir.mark_ready() + "while :; do sleep 0.1; done";
  const auto r = run_launcher(sh(2, stubborn));
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_LT(r.elapsed, 15s);
  EXPECT_NE(r.err.find("sending SIGKILL"), std::string::npos) << r.err;
  expect_all_gone(pids_tagged(r.out, "shell"));
}

// A launcher killed outright (SIGKILL: the OOM killer, `timeout -s KILL`) forwards nothing:
// its guard process stops the ranks instead, with SIGTERM and then, after the grace period,
// SIGKILL, which also ends a rank that ignores SIGTERM, and the ranks' background children.
TEST(Launcher, RanksDoNotOutliveALauncherKilledOutright) {
  ScratchDir dir;
  const auto r = run_launcher(
      sh(2, "if [ \"$RINGFUSE_RANK\" = 1 ]; then trap '' TERM; fi; " + dir.sleeper()), {},
      SignalTrigger{"ready", 2, SIGKILL});
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.err;
  auto left = pids_tagged(r.out, "shell");
  const auto children = pids_tagged(r.out, "child");
  ASSERT_EQ(left.size(), 2u) << r.out;
  ASSERT_EQ(children.size(), 2u) << r.out;
  left.insert(left.end(), children.begin(), children.end());
  const auto until = Clock::now() + 10s;  // the grace period is 5 s
  while (!std::all_of(left.begin(), left.end(), process_gone) && Clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  for (const pid_t pid : left) {
    EXPECT_TRUE(process_gone(pid)) << "process " << pid << " outlived the killed ringfuse-run";
    if (!process_gone(pid)) ::kill(pid, SIGKILL);
  }
}

TEST(Launcher, UnexecutableProgramGives127) {
  const auto r = run_launcher({"-np", "2", "--", "ringfuse-no-such-program", "x"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.err.find("ringfuse-no-such-program"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No such file or directory"), std::string::npos) << r.err;
}

TEST(Launcher, ProgramArgumentsAreNotTakenAsLauncherFlags) {
  const auto r = run_launcher({"-np", "1", "/bin/echo", "-np", "5", "--verbose"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[0] -np 5 --verbose\n");
}

TEST(Launcher, RejectsBadRankCounts) {
  for (const std::string np : {"0", "-3", "abc"}) {
    const auto r = run_launcher({"-np", np, "--", "/bin/true"});
    ASSERT_FALSE(r.timed_out);
    EXPECT_EQ(r.exit_code, 2) << np;
    EXPECT_NE(r.err.find("number of ranks"), std::string::npos) << r.err;
  }
  const auto missing = run_launcher({"--", "/bin/true"});
  EXPECT_EQ(missing.exit_code, 2);
  const auto no_program = run_launcher({"-np", "2"});
  EXPECT_EQ(no_program.exit_code, 2);
  const auto bad_timeout = run_launcher({"-np", "1", "--start-timeout", "0", "--", "/bin/true"});
  EXPECT_EQ(bad_timeout.exit_code, 2);
  EXPECT_NE(bad_timeout.err.find("--start-timeout"), std::string::npos) << bad_timeout.err;
}

TEST(Launcher, BindToCoreGivesEachRankOneCpuOfTheLaunchersOwn) {
  const std::string script = "grep Cpus_allowed_list /proc/self/status | cut -f2";
  // Every flag that takes a value is skipped when "-np" is looked for after it.
  const auto bound = run_launcher({"--bind-to", "core", "--hierarchical", "0", "-np", "2", "--",
                                   "/bin/sh", "-c", script});
  ASSERT_FALSE(bound.timed_out);
  ASSERT_EQ(bound.exit_code, 0) << bound.err;
  cpu_set_t own;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(own), &own), 0);
  std::vector<std::string> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &own)) cpus.push_back(std::to_string(cpu));
  }
  auto out = lines_of(bound.out);
  std::sort(out.begin(), out.end());
  ASSERT_EQ(out.size(), 2u) << bound.out;
  EXPECT_EQ(out[0], "[0] " + cpus.at(0));
  EXPECT_EQ(out[1], "[1] " + cpus.at(1 % cpus.size()));

  const auto unbound = run_launcher({"-np", "1", "--", "/bin/sh", "-c", script});
  ASSERT_EQ(unbound.exit_code, 0) << unbound.err;
  std::ifstream status("/proc/self/status");
  std::string line;
  std::string own_list;
  while (std::getline(status, line)) {
    if (line.starts_with("Cpus_allowed_list:")) own_list = line.substr(line.find('\t') + 1);
  }
  EXPECT_EQ(unbound.out, "[0] " + own_list + "\n") << "without --bind-to, the launcher's CPUs";

  const auto bad = run_launcher({"--bind-to", "socket", "-np", "1", "--", "/bin/true"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--bind-to"), std::string::npos) << bad.err;
}

TEST(Launcher, HelpListsFlagsWithDefaults) {
  const auto r = run_launcher({"--help"});
  ASSERT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_code, 0);
  for (const char* flag : {"--np", "-np", "--start-timeout", "=60", "--verbose", "--timestamp"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag << " missing from\n" << r.out;
  }
}

// Issue #16.5: every tunable of the README's table has its flag, with its variable and default.
TEST(Launcher, HelpListsEveryTunableWithItsVariable) {
  const auto r = run_launcher({"--help"});
  ASSERT_EQ(r.exit_code, 0);
  const std::map<std::string, std::string> flags{
      {"RINGFUSE_ALGO", "--algo"},
      {"RINGFUSE_TRANSPORT", "--transport"},
      {"RINGFUSE_HIERARCHICAL", "--hierarchical"},
      {"RINGFUSE_GROUP_FAILURES", "--group-failures"},
      {"RINGFUSE_BACKEND", "--backend"},
      {"RINGFUSE_TIMEOUT_S", "--timeout"},
      {"RINGFUSE_CONNECT_TIMEOUT_S", "--start-timeout"},
      {"RINGFUSE_HOST_ADDR", "--host-addr"},
      {"RINGFUSE_SOCKETS_PER_PEER", "--sockets-per-peer"},
      {"RINGFUSE_CROSS_MEMORY_MIN", "--cross-memory-min"},
      {"RINGFUSE_P2P_EAGER_BYTES", "--p2p-eager-bytes"},
      {"RINGFUSE_P2P_UNEXPECTED_BYTES", "--p2p-unexpected-bytes"},
      {"RINGFUSE_LOG_LEVEL", "--log-level"},
      {"RINGFUSE_PROGRESS_FILE", "--health-port"},
      {"RINGFUSE_FUSION_THRESHOLD", "--fusion-threshold"},
      {"RINGFUSE_FUSION_INPLACE_MIN", "--fusion-inplace-min"},
      {"RINGFUSE_FUSION_LOOKAHEAD", "--fusion-lookahead"},
      {"RINGFUSE_FUSION_SHM", "--fusion-shm"},
      {"RINGFUSE_CYCLE_TIME_MS", "--cycle-time-ms"},
      {"RINGFUSE_CACHE_CAPACITY", "--cache-capacity"},
      {"RINGFUSE_STALL_TIMEOUT_S", "--stall-timeout"},
      {"RINGFUSE_STALL_ABORT_S", "--stall-abort"},
      {"RINGFUSE_MATCH", "--match"},
      {"RINGFUSE_TIMELINE", "--timeline"},
      {"RINGFUSE_TIMELINE_MARK_CYCLES", "--timeline-mark-cycles"}};
  for (const auto& [variable, flag] : flags) {
    EXPECT_NE(r.out.find(flag + " "), std::string::npos) << flag << " missing from\n" << r.out;
    EXPECT_NE(r.out.find(variable), std::string::npos) << variable << " missing from\n" << r.out;
  }
  EXPECT_NE(r.out.find("--fusion-lookahead N=64"), std::string::npos) << r.out;
}

// Issue #22.4: a mistyped flag used to be taken for the program (exit 127).
TEST(Launcher, UnknownFlagIsRefusedWithTheClosestValidOne) {
  expect_usage_error({"--transprot", "tcp", "-np", "1", "--", "/bin/true"},
                     {"unknown flag '--transprot'", "did you mean '--transport'"});
  expect_usage_error({"-np", "1", "--verbos", "--", "/bin/true"}, {"did you mean '--verbose'"});
  // Attached values are fine, and the program's own flags stay the program's.
  const auto attached = run_launcher({"--np=1", "--algo=ring", "/bin/echo", "--transprot"});
  EXPECT_EQ(attached.exit_code, 0) << attached.err;
  EXPECT_EQ(attached.out, "[0] --transprot\n");
}

// Issue #22.4: invalid tunable flags exited 1, although usage errors exit 2.
TEST(Launcher, InvalidTunableFlagIsAUsageError) {
  expect_usage_error({"--algo", "butterfly", "-np", "1", "--", "/bin/true"},
                     {"--algo", "RINGFUSE_ALGO"});
  expect_usage_error({"--host-addr", "8.8.8.8", "-np", "1", "--", "/bin/true"},
                     {"RINGFUSE_HOST_ADDR"});
  expect_usage_error(
      {"--stall-timeout", "30", "--stall-abort", "10", "-np", "1", "--", "/bin/true"},
      {"--stall-abort"});
}

// Lowers this process's open-file limit (inherited by the launchers it starts) for one scope.
class ScopedOpenFileLimit {
 public:
  explicit ScopedOpenFileLimit(rlim_t soft) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    EXPECT_EQ(::setrlimit(RLIMIT_NOFILE, &lowered), 0);
  }
  ~ScopedOpenFileLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  ScopedOpenFileLimit(const ScopedOpenFileLimit&) = delete;
  ScopedOpenFileLimit& operator=(const ScopedOpenFileLimit&) = delete;

 private:
  rlimit saved_{};
};

// A rank whose program ends before init() (an `if rank == 0:` around it, a crash on import)
// will never join: its peers' set-up used to wait the whole connect timeout (60 s) and then
// ask whether it was "still running". ringfuse-run records the end in its store and the
// waiting ranks stop at once, naming the rank and how it ended.
TEST(Launcher, ARankThatEndsBeforeJoiningEndsItsPeersWaitAtOnce) {
  const auto r = run_launcher(
      sh(3, std::string("if [ \"$RINGFUSE_RANK\" = 1 ]; then echo leaving; exit 0; fi; exec ") +
                COLLECTIVE_CHECK_PATH + " --collective allreduce --counts 1 --algos ring"),
      {"RINGFUSE_CONNECT_TIMEOUT_S=60"}, std::nullopt, 50s);
  ASSERT_FALSE(r.timed_out) << r.err;
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_LT(r.elapsed, 20s) << r.err;
  const std::regex named(
      R"(\[[02]\] init failed: rank [02]: .*: rank 1 exited with status 0 \(pid [0-9]+ on localhost\) )"
      R"(before it joined, so it will never arrive)");
  EXPECT_TRUE(std::regex_search(r.err, named)) << r.err;
}

// Issue #22.4: -np beyond what the launcher's descriptors can hold ran out of them half-way
// and kept running; it is refused before any rank starts, with the ulimit -n to ask for.
// The limit is lowered so that the test never depends on (or, on a broken launcher, exhausts)
// the machine's own.
TEST(Launcher, MoreRanksThanOpenFilesAreRefusedBeforeSpawning) {
  ScopedOpenFileLimit limit(128);
  const auto r = run_launcher(sh(100, "echo started"), {}, std::nullopt, 30s);
  ASSERT_FALSE(r.timed_out);
  ASSERT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out.find("started"), std::string::npos) << "no rank may start";
  EXPECT_NE(r.err.find("-np 100:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ulimit -n"), std::string::npos) << r.err;
  const auto huge = run_launcher({"-np", "100000", "--", "/bin/true"}, {}, std::nullopt, 30s);
  ASSERT_FALSE(huge.timed_out);
  EXPECT_EQ(huge.exit_code, 2) << huge.err;
  EXPECT_NE(huge.err.find("ulimit -n"), std::string::npos) << huge.err;
  // A job that fits still runs under the same limit.
  const auto fits = run_launcher(sh(4, "echo started"), {}, std::nullopt, 30s);
  EXPECT_EQ(fits.exit_code, 0) << fits.err;
}

}  // namespace
