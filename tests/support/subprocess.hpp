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
  /// Waits until the child exits or `timeout` × timeout_scale() passes (then kills it).
  ProcessResult wait(std::chrono::milliseconds timeout);
  /// The output so far.
  std::string output() const;

 private:
  int pid_ = -1;
  std::string output_path_;
  bool reaped_ = false;
  std::chrono::steady_clock::time_point started_;
};

/// The factor deadlines are multiplied by: RINGFUSE_TEST_TIMEOUT_SCALE of the build (1, or
/// more in a sanitizer build, whose processes run several times slower). For deadlines that
/// only stop a hung test, not for time bounds a test asserts.
int timeout_scale();

ProcessResult run_process(const std::vector<std::string>& argv,
                          const std::map<std::string, std::string>& env,
                          std::chrono::milliseconds timeout);

}  // namespace ringfuse::testing
