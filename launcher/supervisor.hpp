// Runs the job: spawns the local ranks, relays their output, forwards signals, and applies the
// exit-status contract of DESIGN.md §3 (first failure stops everyone and decides the code).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "health_server.hpp"
#include "job_environment.hpp"
#include "signal_pipe.hpp"

namespace ringfuse::launcher {

struct SupervisorOptions {
  /// How long ranks get between SIGTERM and SIGKILL once the job is being stopped.
  std::chrono::milliseconds stop_grace{5000};
  /// How long a rank's pipes are still read after it exited: only something that escaped its
  /// process group can hold them open longer, and we must not wait for that forever.
  std::chrono::milliseconds drain_after_exit{2000};
  bool verbose = false;
  bool timestamps = false;
  /// Host name used in reports ("rank 2 (host localhost, pid 123)").
  std::string host = "localhost";
  /// Where the run's progress is published for --health-port (null: nowhere). Not owned.
  HealthState* health = nullptr;
  /// --bind-to core: the i-th rank started on this host is bound to the i-th CPU the launcher
  /// may use (wrapping around, with a warning, when there are more ranks than CPUs).
  bool bind_to_core = false;
  /// Told each rank whose process ends, with what ended it ("exited with status 0 (pid 12 on
  /// localhost)"), so it can be recorded for the ranks that wait for it (rank_exits.hpp).
  /// Must not throw.
  std::function<void(int rank, const std::string& description)> on_rank_exit;
};

/// One rank to start: its program (for a remote rank, the rsh agent's command line) and the
/// environment the started process gets.
struct RankLaunch {
  int rank = 0;
  std::string host;
  std::vector<std::string> argv;
  std::vector<std::string> environment;
  /// Started through the rsh agent on another host, where the launcher's files are not.
  bool remote = false;
};

/// The launches for every local rank of `environment`, each running `command` directly.
std::vector<RankLaunch> local_launches(const std::vector<std::string>& command,
                                       const JobEnvironment& environment, const std::string& host);

class Supervisor {
 public:
  /// `signals` reports the signals to forward and wakes the loop when a rank ends.
  Supervisor(SupervisorOptions options, SignalPipe& signals);

  /// Starts every launch and returns ringfuse-run's exit
  /// code: 0 if all ranks succeeded, else the first failing rank's code (128+signal).
  /// Throws ProgramNotExecutable if a rank cannot be
  /// started (the ranks already started are killed).
  int run(const std::vector<RankLaunch>& launches);

 private:
  SupervisorOptions options_;
  SignalPipe& signals_;
};

/// Writes "ringfuse-run: <message>\n" to stderr in one write.
void report(const std::string& message);

}  // namespace ringfuse::launcher
