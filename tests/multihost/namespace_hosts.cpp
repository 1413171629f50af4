#include "namespace_hosts.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ringfuse::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kPrefix = "rfmh-";

ProcessResult run_ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, {}, 10s);
}

// Namespaces of earlier test processes that died before their clean-up (a crash, a SIGKILL
// at a CTest timeout): "rfmh-<pid>-..." whose pid is gone.
void remove_stale_namespaces() {
  std::error_code ignored;
  for (const auto& entry : fs::directory_iterator("/run/netns", ignored)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with(kPrefix)) continue;
    const int pid = std::atoi(name.c_str() + std::char_traits<char>::length(kPrefix));
    if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) run_ip({"netns", "delete", name});
  }
}

}  // namespace

std::optional<std::string> NamespaceHosts::unavailable_reason() {
  if (::geteuid() != 0) return "the multi-host test bed needs root (network, UTS and mount namespaces)";
  for (const char* tool : {"/usr/sbin/ip", "/usr/bin/nsenter", "/usr/bin/unshare"}) {
    if (::access(tool, X_OK) != 0) return std::string("the multi-host test bed needs ") + tool;
  }
  const std::string probe = kPrefix + std::to_string(::getpid()) + "-probe";
  const auto added = run_ip({"netns", "add", probe});
  if (added.exit_code != 0) {
    return "network namespaces cannot be made here (`ip netns add` failed: " + added.output + ")";
  }
  const auto unshared = run_process(
      {"ip", "netns", "exec", probe, "unshare", "--uts", "--mount", "--propagation", "private",
       "sh", "-c", "hostname rfmh-probe && mount -t tmpfs rfmh-probe /dev/shm"},
      {}, 10s);
  run_ip({"netns", "delete", probe});
  if (unshared.exit_code != 0) {
    return "UTS or mount namespaces cannot be made here (unshare failed: " + unshared.output + ")";
  }
  return std::nullopt;
}

NamespaceHosts::NamespaceHosts(const std::vector<std::string>& hostnames) {
  static int made = 0;
  remove_stale_namespaces();
  prefix_ = kPrefix + std::to_string(::getpid()) + "-" + std::to_string(made++);
  dir_ = fs::temp_directory_path() / prefix_;
  fs::create_directories(hosts_dir());
  switch_ns_ = prefix_ + "-sw";
  try {
    run_checked({"ip", "netns", "add", switch_ns_});
    run_checked({"ip", "-n", switch_ns_, "link", "add", "br0", "type", "bridge"});
    run_checked({"ip", "-n", switch_ns_, "link", "set", "br0", "up"});
    for (std::size_t i = 0; i < hostnames.size(); ++i) {
      const int host = static_cast<int>(i);
      const std::string ns = prefix_ + "-h" + std::to_string(i);
      host_ns_.push_back(ns);
      const std::string port = "port" + std::to_string(i);
      run_checked({"ip", "netns", "add", ns});
      run_checked({"ip", "-n", switch_ns_, "link", "add", port, "type", "veth", "peer", "name",
                   "eth0", "netns", ns});
      run_checked({"ip", "-n", switch_ns_, "link", "set", port, "master", "br0", "up"});
      run_checked({"ip", "-n", ns, "addr", "add", address(host) + "/24", "dev", "eth0"});
      run_checked({"ip", "-n", ns, "link", "set", "eth0", "up"});
      run_checked({"ip", "-n", ns, "link", "set", "lo", "up"});

      // /etc/hosts as a Debian installer writes it: the host's own name on 127.0.1.1.
      const fs::path etc_hosts = dir_ / ("etc-hosts-" + std::to_string(i));
      std::ofstream(etc_hosts) << "127.0.0.1\tlocalhost\n127.0.1.1\t" << hostnames[i] << "\n";
      const fs::path ready = dir_ / ("ready-" + std::to_string(i));
      // The holder keeps the host's namespaces alive (up to 15 min, a backstop) and is what
      // the agents enter; `ip netns exec` and unshare exec in place, so its pid is sleep's.
      holders_.push_back(std::make_unique<Process>(
          std::vector<std::string>{
              "ip", "netns", "exec", ns, "unshare", "--uts", "--mount", "--propagation",
              "private", "sh", "-c",
              "hostname '" + hostnames[i] + "' && mount -t tmpfs -o size=2g rfmh-shm /dev/shm && "
              "mount --bind '" + etc_hosts.string() + "' /etc/hosts && touch '" +
                  ready.string() + "' && exec sleep 900"},
          std::map<std::string, std::string>{}));
      holder_pids_.push_back(holders_.back()->pid());
      const auto deadline = Clock::now() + 10s;
      while (!fs::exists(ready)) {
        if (Clock::now() >= deadline) {
          throw std::runtime_error("host " + std::to_string(i) + " did not come up: " +
                                   holders_.back()->output());
        }
        std::this_thread::sleep_for(10ms);
      }
      for (const auto& name : {address(host), hostnames[i]}) {
        std::ofstream(hosts_dir() / name) << holder_pids_.back() << "\n";
      }
    }
  } catch (...) {
    cleanup();
    throw;
  }
  agent_ = (dir_ / "ns-rsh").string();
  std::ofstream(agent_) << "#!/bin/sh\n"
                           "# ns-rsh HOST COMMAND: runs COMMAND on the namespace host HOST\n"
                           "pid=$(cat '" << hosts_dir().string() << "'/\"$1\" 2>/dev/null) || "
                           "{ echo \"ns-rsh: no host $1\" >&2; exit 255; }\n"
                           "shift\n"
                           "exec nsenter -t \"$pid\" -n -u -m -- /bin/sh -c \"$1\"\n";
  ::chmod(agent_.c_str(), 0755);
}

NamespaceHosts::~NamespaceHosts() { cleanup(); }

void NamespaceHosts::cleanup() {
  // Whatever entered a host (ranks, launchers, dnsmasq) shares its network namespace: end
  // those first, then the holders, then the namespaces themselves.
  for (const auto& ns : host_ns_) {
    const auto pids = run_ip({"netns", "pids", ns});
    std::istringstream words(pids.output);
    for (int pid = 0; words >> pid;) ::kill(pid, SIGKILL);
  }
  holders_.clear();  // ~Process kills and reaps each holder
  for (const auto& ns : host_ns_) run_ip({"netns", "delete", ns});
  if (!switch_ns_.empty()) run_ip({"netns", "delete", switch_ns_});
  host_ns_.clear();
  switch_ns_.clear();
  std::error_code ignored;
  fs::remove_all(dir_, ignored);
}

void NamespaceHosts::run_checked(const std::vector<std::string>& argv) {
  const auto result = run_process(argv, {}, 10s);
  if (result.exit_code != 0) {
    std::string line;
    for (const auto& word : argv) line += word + " ";
    throw std::runtime_error("test bed: `" + line + "` failed: " + result.output);
  }
}

std::string NamespaceHosts::address(int host) const {
  return "10.99.0." + std::to_string(host + 1);
}

std::string NamespaceHosts::host_list(int slots) const {
  std::string list;
  for (std::size_t i = 0; i < holders_.size(); ++i) {
    if (!list.empty()) list += ",";
    list += address(static_cast<int>(i)) + ":" + std::to_string(slots);
  }
  return list;
}

std::vector<std::string> NamespaceHosts::on_host(int host,
                                                 const std::vector<std::string>& argv) const {
  std::vector<std::string> command{"nsenter", "-t", std::to_string(holder_pids_.at(host)), "-n",
                                   "-u", "-m", "--"};
  command.insert(command.end(), argv.begin(), argv.end());
  return command;
}

void NamespaceHosts::set_link(int host, bool up) {
  run_checked({"ip", "-n", switch_ns_, "link", "set", "port" + std::to_string(host),
               up ? "up" : "down"});
}

}  // namespace ringfuse::testing
