// An rsh agent whose ranks outlive it, as with ssh without -tt: when ringfuse-run stops the
// agent, the rank it started keeps running, so a test can read what the survivors of a failure
// say themselves after the launcher has gone. Each rank runs in a session of its own, writes
// its output to a log of its own (relayed to the launcher while the agent lives) and records
// its pid; the destructor SIGKILLs whatever is still running, so no rank outlives the test.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

namespace ringfuse::testing {

class DetachedAgent {
 public:
  /// Writes the agent into `dir` (which must exist). With `hosts_dir`
  /// (NamespaceHosts::hosts_dir()), a host named there is entered like NamespaceHosts::agent()
  /// does; any other host (a loopback address) runs the rank here.
  explicit DetachedAgent(const std::filesystem::path& dir,
                         const std::optional<std::filesystem::path>& hosts_dir = std::nullopt);
  ~DetachedAgent();
  DetachedAgent(const DetachedAgent&) = delete;
  DetachedAgent& operator=(const DetachedAgent&) = delete;

  /// For --rsh-agent.
  const std::string& path() const { return path_; }
  /// The pid of global rank `rank`, once it started (waits up to `timeout`), or -1.
  int pid_of(int rank, std::chrono::milliseconds timeout) const;
  /// What global rank `rank` wrote so far.
  std::string log_of(int rank) const;
  /// Waits until every rank this agent started has exited, up to `timeout`; returns whether
  /// they all did.
  bool wait_all_exited(std::chrono::milliseconds timeout) const;

 private:
  std::filesystem::path dir_;
  std::string path_;
};

}  // namespace ringfuse::testing
