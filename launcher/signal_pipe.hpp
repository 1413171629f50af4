// Turns the signals the launcher cares about into bytes on a pipe, so that the single poll()
// loop sees them alongside the ranks' output (the classic self-pipe trick).
#pragma once

#include <signal.h>

#include <vector>

#include "unique_fd.hpp"

namespace ringfuse::launcher {

class SignalPipe {
 public:
  /// Installs handlers for SIGINT, SIGTERM, SIGHUP (to forward to the ranks) and SIGCHLD (to
  /// wake up when a rank ends), and ignores SIGPIPE. Only one may exist at a time.
  SignalPipe();
  /// Restores the previous dispositions.
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  /// Readable (for poll) whenever a signal has arrived since the last drain().
  int fd() const noexcept { return read_end_.get(); }
  /// Returns the signals received since the last call, in arrival order.
  std::vector<int> drain();

 private:
  UniqueFd read_end_;
  UniqueFd write_end_;
  struct Saved {
    int signal;
    struct sigaction action;
  };
  std::vector<Saved> saved_;
};

}  // namespace ringfuse::launcher
