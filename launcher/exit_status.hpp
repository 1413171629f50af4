// How a rank ended, in the two forms the launcher needs: a shell-style exit code for
// ringfuse-run itself, and words for the one-line failure report.
#pragma once

#include <signal.h>

#include <string>

namespace ringfuse::launcher {

class ExitStatus {
 public:
  /// Decodes what waitid(2) reports for an ended child.
  static ExitStatus from_child_info(const siginfo_t& info);
  static ExitStatus exited(int code) { return ExitStatus(false, code); }
  static ExitStatus signaled(int signal) { return ExitStatus(true, signal); }

  bool success() const noexcept { return !by_signal_ && value_ == 0; }
  bool by_signal() const noexcept { return by_signal_; }
  /// The exit code, or the signal number when by_signal().
  int value() const noexcept { return value_; }

  /// The code ringfuse-run exits with for this rank: the code itself, or 128+signal as shells do.
  int launcher_exit_code() const noexcept { return by_signal_ ? 128 + value_ : value_; }

  /// "exited with status 3" or "was killed by signal 9 (Killed)".
  std::string describe() const;

 private:
  ExitStatus(bool by_signal, int value) : by_signal_(by_signal), value_(value) {}

  bool by_signal_;
  int value_;
};

}  // namespace ringfuse::launcher
