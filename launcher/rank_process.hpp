// One running rank: a child process in its own process group, with its stdout and stderr
// connected to pipes the launcher reads.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "exit_status.hpp"
#include "ringfuse/error.hpp"
#include "unique_fd.hpp"

namespace ringfuse::launcher {

/// The rank's program could not be started at all (not found, not executable, ...).
/// ringfuse-run exits 127 for it, as shells do.
class ProgramNotExecutable : public Error {
 public:
  using Error::Error;
};

class RankProcess {
 public:
  struct Spawned;

  /// Starts `command` (command[0] looked up in PATH like execvp) with exactly `environment`,
  /// stdin from /dev/null, stdout/stderr into fresh pipes, in a new process group so that
  /// signals reach the rank's whole process tree and a terminal's Ctrl-C reaches only us.
  /// Throws ProgramNotExecutable naming the program and the reason. With `cpu`, the process
  /// starts bound to that CPU (cpu_binding.hpp).
  static Spawned spawn(int rank, std::string host, const std::vector<std::string>& command,
                       const std::vector<std::string>& environment,
                       std::optional<int> cpu = std::nullopt);

  RankProcess(RankProcess&& other) noexcept;
  RankProcess& operator=(RankProcess&&) = delete;
  RankProcess(const RankProcess&) = delete;
  RankProcess& operator=(const RankProcess&) = delete;
  /// Safety net for error paths: a rank still running is killed and reaped, never orphaned.
  ~RankProcess();

  int rank() const noexcept { return rank_; }
  pid_t pid() const noexcept { return pid_; }
  const std::string& host() const noexcept { return host_; }
  bool running() const noexcept { return !status_.has_value(); }
  const std::optional<ExitStatus>& status() const noexcept { return status_; }

  /// Sends `signal` to the rank's process group (no-op once the rank has been reaped).
  void signal_group(int signal) const noexcept;

  /// Non-blocking: if the rank's main process has ended, kills what it left behind in its
  /// process group, reaps it and returns how it ended (also on later calls).
  const std::optional<ExitStatus>& poll_exit();

 private:
  RankProcess(int rank, std::string host, pid_t pid) : rank_(rank), host_(std::move(host)), pid_(pid) {}

  int rank_;
  std::string host_;
  pid_t pid_;
  std::optional<ExitStatus> status_;
};

struct RankProcess::Spawned {
  RankProcess process;
  UniqueFd stdout_read;  // non-blocking
  UniqueFd stderr_read;  // non-blocking
};

}  // namespace ringfuse::launcher
