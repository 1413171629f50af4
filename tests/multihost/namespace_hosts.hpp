// Several "hosts" on one machine, for tests that must see what only separate hosts show: each
// host is a network namespace with its own address on a private /24, its own hostname (UTS
// namespace), its own /dev/shm (a tmpfs in its own mount namespace) and its own /etc/hosts,
// the way a fresh Debian host writes it (its name on 127.0.1.1). The hosts are joined by a
// bridge inside a separate "switch" namespace, so nothing of this network exists outside the
// namespaces the test bed creates, and deleting them removes every link. An rsh agent enters a
// host as ssh would log into it. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN): where namespaces
// cannot be made, unavailable_reason() says why, for GTEST_SKIP.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "subprocess.hpp"

namespace ringfuse::testing {

class NamespaceHosts {
 public:
  /// Why this machine cannot run the test bed (not root, no namespaces), or nullopt.
  static std::optional<std::string> unavailable_reason();

  /// Creates one host per entry of `hostnames` (names may repeat: two "containers" with the
  /// same hostname); host i gets the address 10.99.0.(i+1)/24. Throws std::runtime_error with
  /// the failing command's output when a step fails (what was made is removed again).
  explicit NamespaceHosts(const std::vector<std::string>& hostnames);
  /// Kills every process the test bed started or that entered a host through the agents, then
  /// deletes the namespaces (and with them the bridge and every link).
  ~NamespaceHosts();
  NamespaceHosts(const NamespaceHosts&) = delete;
  NamespaceHosts& operator=(const NamespaceHosts&) = delete;

  std::size_t size() const { return holders_.size(); }
  /// "10.99.0.(host+1)".
  std::string address(int host) const;
  /// "addr0:slots,addr1:slots,..." for -H.
  std::string host_list(int slots) const;

  /// `argv` run on `host` (its network, hostname, /dev/shm and /etc/hosts), as a command line
  /// for run_process/Process.
  std::vector<std::string> on_host(int host, const std::vector<std::string>& argv) const;

  /// `AGENT HOST COMMAND` runs COMMAND on HOST (named by address or hostname) as ssh -tt
  /// would: the rank is the agent's process, and stopping the agent stops it.
  const std::string& agent() const { return agent_; }
  /// Takes `host`'s link to the bridge down (a cut cable) or up again.
  void set_link(int host, bool up);

  const std::filesystem::path& dir() const { return dir_; }
  /// The folder naming each host (by address and by hostname) in a file holding the pid whose
  /// namespaces are the host's: what the agents read.
  std::filesystem::path hosts_dir() const { return dir_ / "hosts"; }

 private:
  void run_checked(const std::vector<std::string>& argv);
  void cleanup();

  std::string prefix_;         // of every namespace name: "rfmh-<pid>-<n>"
  std::filesystem::path dir_;  // agents, /etc/hosts files, pids and logs
  std::string switch_ns_;
  std::vector<std::string> host_ns_;
  std::vector<std::unique_ptr<Process>> holders_;  // one per host: keeps its namespaces alive
  std::vector<int> holder_pids_;
  std::string agent_;
};

}  // namespace ringfuse::testing
