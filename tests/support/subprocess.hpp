// Runs a child process with a hard deadline and captures its output, so no test can hang.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace ringfuse::testing {

struct ProcessResult {
  int exit_code = -1;      // 128+signal when killed by a signal
  bool timed_out = false;  // the child was killed at the deadline
  std::string output;      // stdout and stderr, interleaved
  std::chrono::milliseconds elapsed{0};
};

/// A started child whose output is collected into a temporary file.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  int pid() const { return pid_; }
  /// Waits until the child exits or `timeout` passes (then kills it).
  ProcessResult wait(std::chrono::milliseconds timeout);
  /// The output so far.
  std::string output() const;

 private:
  int pid_ = -1;
  std::string output_path_;
  bool reaped_ = false;
  std::chrono::steady_clock::time_point started_;
};

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env,
                          std::chrono::milliseconds timeout);

}  // namespace ringfuse::testing
