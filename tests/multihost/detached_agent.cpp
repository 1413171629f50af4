#include "detached_agent.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace ringfuse::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool alive(int pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

}  // namespace

DetachedAgent::DetachedAgent(const fs::path& dir, const std::optional<fs::path>& hosts_dir)
    : dir_(dir / "detached"), path_((dir / "detached-rsh").string()) {
  fs::create_directories(dir_);
  const std::string hosts = hosts_dir ? hosts_dir->string() : (dir_ / "no-hosts").string();
  // The rank number is read from the command line ringfuse-run builds (`env ... RINGFUSE_RANK=N
  // ...`); setsid puts the rank in a session of its own, out of reach of the launcher's
  // killpg of the agent's group; tail relays its log while the rank runs.
  std::ofstream(path_)
      << "#!/bin/sh\n"
         "# detached-rsh HOST COMMAND: runs COMMAND on HOST so that it outlives this agent\n"
         "host=$1; shift\n"
         "rank=$(printf '%s\\n' \"$1\" | sed -n 's/.* RINGFUSE_RANK=\\([0-9]*\\) .*/\\1/p')\n"
         "[ -n \"$rank\" ] || rank=unnumbered-$$\n"
         "enter=\n"
         "if [ -f '" << hosts << "'/\"$host\" ]; then\n"
         "  enter=\"nsenter -t $(cat '" << hosts << "'/\"$host\") -n -u -m --\"\n"
         "fi\n"
         "log='" << dir_.string() << "'/rank-$rank.log\n"
         ": > \"$log\"\n"
         "$enter setsid /bin/sh -c \"$1\" > \"$log\" 2>&1 < /dev/null &\n"
         "pid=$!\n"
         "echo $pid > \"$log.pid.tmp\" && mv \"$log.pid.tmp\" \"$log.pid\"\n"
         "tail -n +1 -f --pid=$pid \"$log\" &\n"
         "wait $pid\n"
         "status=$?\n"
         "wait\n"
         "exit $status\n";
  ::chmod(path_.c_str(), 0755);
}

DetachedAgent::~DetachedAgent() {
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator(dir_, ignored)) {
    if (entry.path().extension() != ".pid") continue;
    const int pid = std::atoi(read_text(entry.path()).c_str());
    if (pid > 0) ::kill(pid, SIGKILL);
  }
}

int DetachedAgent::pid_of(int rank, std::chrono::milliseconds timeout) const {
  const auto path = dir_ / ("rank-" + std::to_string(rank) + ".log.pid");
  const auto deadline = Clock::now() + timeout;
  while (!fs::exists(path)) {
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return std::atoi(read_text(path).c_str());
}

std::string DetachedAgent::log_of(int rank) const {
  return read_text(dir_ / ("rank-" + std::to_string(rank) + ".log"));
}

bool DetachedAgent::wait_all_exited(std::chrono::milliseconds timeout) const {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    bool any = false;
    std::error_code ignored;
    for (const auto& entry : fs::directory_iterator(dir_, ignored)) {
      if (entry.path().extension() == ".pid" && alive(std::atoi(read_text(entry.path()).c_str()))) {
        any = true;
      }
    }
    if (!any) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace ringfuse::testing
