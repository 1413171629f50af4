// Ranks must not outlive a launcher that is killed outright (SIGKILL, the OOM killer,
// `timeout -s KILL`): they would hold their CPUs, GPUs and ports with nobody left to stop them.
// As Horovod's launcher does (its middleman process), a small guard process watches the
// launcher through a pipe; when the pipe closes without a goodbye, it stops the ranks'
// process groups: SIGTERM, then SIGKILL after the grace period.
#pragma once

#include <sys/types.h>

#include <chrono>

#include "unique_fd.hpp"

namespace ringfuse::launcher {

class OrphanGuard {
 public:
  /// Starts the guard process. Throws Error(system) when it cannot be started.
  explicit OrphanGuard(std::chrono::milliseconds grace);
  /// Says goodbye (the launcher ends in order) and reaps the guard.
  ~OrphanGuard();
  OrphanGuard(const OrphanGuard&) = delete;
  OrphanGuard& operator=(const OrphanGuard&) = delete;

  /// The process group `group` (a rank's) is to be stopped if the launcher dies.
  void watch(pid_t group) noexcept;
  /// `group` has ended and been reaped: its id may be reused, so it is no longer stopped.
  void forget(pid_t group) noexcept;

  pid_t pid() const { return pid_; }

 private:
  void tell(pid_t record) noexcept;

  pid_t pid_ = -1;
  UniqueFd to_guard_;
};

}  // namespace ringfuse::launcher
