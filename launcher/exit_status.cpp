#include "exit_status.hpp"

#include <cstring>

namespace ringfuse::launcher {

ExitStatus ExitStatus::from_child_info(const siginfo_t& info) {
  // CLD_KILLED and CLD_DUMPED both mean a signal ended it; si_status is then the signal.
  if (info.si_code == CLD_EXITED) return exited(info.si_status);
  return signaled(info.si_status);
}

std::string ExitStatus::describe() const {
  if (!by_signal_) return "exited with status " + std::to_string(value_);
  // sigdescr_np is glibc's thread-safe strsignal (the store server runs on another thread).
  const char* name = ::sigdescr_np(value_);
  return "was killed by signal " + std::to_string(value_) + " (" +
         (name != nullptr ? name : "unknown signal") + ")";
}

}  // namespace ringfuse::launcher
