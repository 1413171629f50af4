#include "supervisor.hpp"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "cpu_binding.hpp"
#include "exit_status.hpp"
#include "orphan_guard.hpp"
#include "output_relay.hpp"
#include "rank_process.hpp"
#include "shm_cleanup.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

void report(const std::string& message) {
  const std::string line = "ringfuse-run: " + message + "\n";
  write_all(STDERR_FILENO, line.data(), line.size());
}

namespace {

using Clock = std::chrono::steady_clock;

std::string signal_name(int signal) {
  const char* abbrev = ::sigabbrev_np(signal);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(signal);
}

struct RankSlot {
  RankSlot(RankProcess::Spawned spawned, bool timestamps)
      : process(std::move(spawned.process)),
        out(process.rank(), std::move(spawned.stdout_read), STDOUT_FILENO, timestamps),
        err(process.rank(), std::move(spawned.stderr_read), STDERR_FILENO, timestamps) {}

  RankProcess process;
  OutputRelay out;
  OutputRelay err;
  Clock::time_point exited_at{};
};

struct Failure {
  int rank;
  pid_t pid;
  std::string host;
  ExitStatus status;
  int others_stopped;
};

// The state of one run; Supervisor::run drives it.
class Job {
 public:
  Job(const SupervisorOptions& options, SignalPipe& signals, OrphanGuard& guard)
      : options_(options), signals_(signals), guard_(guard) {}

  void spawn_all(const std::vector<RankLaunch>& launches) {
    slots_.reserve(launches.size());
    const auto cpus = options_.bind_to_core ? allowed_cpus() : std::vector<int>{};
    const auto local_ranks = std::count_if(launches.begin(), launches.end(),
                                           [](const RankLaunch& launch) { return !launch.remote; });
    if (options_.bind_to_core && static_cast<std::size_t>(local_ranks) > cpus.size()) {
      report("warning: --bind-to core: " + std::to_string(local_ranks) + " ranks on " +
             std::to_string(cpus.size()) + " CPUs; some ranks share a CPU");
    }
    std::size_t next_cpu = 0;
    if (options_.health) options_.health->expect_ranks(static_cast<int>(launches.size()));
    for (const auto& launch : launches) {
      auto environment = launch.environment;
      if (options_.health && !launch.remote) {
        if (auto path = options_.health->progress_file_for(launch.rank)) {
          std::erase_if(environment, [](const std::string& entry) {
            return entry.starts_with("RINGFUSE_PROGRESS_FILE=");
          });
          environment.push_back("RINGFUSE_PROGRESS_FILE=" + *path);
        }
      }
      std::optional<int> cpu;
      if (!cpus.empty() && !launch.remote) cpu = cpus[next_cpu++ % cpus.size()];
      slots_.push_back(std::make_unique<RankSlot>(
          RankProcess::spawn(launch.rank, launch.host, launch.argv, environment, cpu),
          options_.timestamps));
      guard_.watch(slots_.back()->process.pid());
      if (options_.health) options_.health->rank_started();
      if (options_.verbose) {
        report("started rank " + std::to_string(launch.rank) + " on " + launch.host + " (pid " +
               std::to_string(slots_.back()->process.pid()) + ")" +
               (cpu ? ", bound to CPU " + std::to_string(*cpu) : std::string()));
      }
    }
  }

  int supervise() {
    while (true) {
      reap_exited();
      escalate_if_due();
      close_drained();
      if (finished()) break;
      wait_for_events();
    }
    if (!failure_) return 0;
    std::string line = "rank " + std::to_string(failure_->rank) + " (host " + failure_->host +
                       ", pid " + std::to_string(failure_->pid) + ") " +
                       failure_->status.describe();
    if (failure_->others_stopped > 0) {
      line += "; stopped the other " + std::to_string(failure_->others_stopped) +
              (failure_->others_stopped == 1 ? " rank" : " ranks");
    } else if (slots_.size() > 1) {
      line += "; the other ranks had already exited";
    }
    report(line);
    return failure_->status.launcher_exit_code();
  }

 private:
  int running_count() const {
    return static_cast<int>(std::count_if(slots_.begin(), slots_.end(),
                                          [](const auto& s) { return s->process.running(); }));
  }

  void signal_running(int signal) {
    for (auto& slot : slots_) slot->process.signal_group(signal);
  }

  // Begins the orderly stop: `signal` now, SIGKILL when the grace period is over.
  void begin_stop(int signal) {
    signal_running(signal);
    if (!kill_deadline_) kill_deadline_ = Clock::now() + options_.stop_grace;
  }

  void reap_exited() {
    for (auto& slot : slots_) {
      if (!slot->process.running()) continue;
      const auto& status = slot->process.poll_exit();
      if (!status) continue;
      guard_.forget(slot->process.pid());
      slot->exited_at = Clock::now();
      if (options_.health) {
        options_.health->rank_exited(slot->process.rank(), status->launcher_exit_code());
      }
      if (options_.on_rank_exit) {
        options_.on_rank_exit(slot->process.rank(),
                              status->describe() + " (pid " + std::to_string(slot->process.pid()) +
                                  " on " + slot->process.host() + ")");
      }
      if (options_.verbose) {
        report("rank " + std::to_string(slot->process.rank()) + " (pid " +
               std::to_string(slot->process.pid()) + ") " + status->describe());
      }
      if (!status->success() && !failure_) {
        failure_ = Failure{slot->process.rank(), slot->process.pid(), slot->process.host(),
                           *status, running_count()};
        if (options_.health) {
          options_.health->set_failed("rank " + std::to_string(slot->process.rank()) + " " +
                                      status->describe());
        }
        begin_stop(SIGTERM);
      }
    }
  }

  void escalate_if_due() {
    if (killed_ || !kill_deadline_ || Clock::now() < *kill_deadline_) return;
    kill_all_now("did not stop within the grace period");
  }

  void kill_all_now(const std::string& why) {
    killed_ = true;
    for (auto& slot : slots_) {
      if (!slot->process.running()) continue;
      report("rank " + std::to_string(slot->process.rank()) + " (pid " +
             std::to_string(slot->process.pid()) + ") " + why + "; sending SIGKILL");
      slot->process.signal_group(SIGKILL);
    }
  }

  void close_drained() {
    const auto now = Clock::now();
    for (auto& slot : slots_) {
      if (slot->process.running() || now < slot->exited_at + options_.drain_after_exit) continue;
      slot->out.close();
      slot->err.close();
    }
  }

  bool finished() const {
    return std::all_of(slots_.begin(), slots_.end(), [](const auto& s) {
      return !s->process.running() && !s->out.open() && !s->err.open();
    });
  }

  // Sleeps in poll() until output, a signal (SIGCHLD included) or the next deadline.
  void wait_for_events() {
    std::vector<pollfd> fds;
    std::vector<OutputRelay*> relays;
    fds.push_back({signals_.fd(), POLLIN, 0});
    for (auto& slot : slots_) {
      for (OutputRelay* relay : {&slot->out, &slot->err}) {
        if (!relay->open()) continue;
        fds.push_back({relay->fd(), POLLIN, 0});
        relays.push_back(relay);
      }
    }
    // The cap is a safety net only; SIGCHLD and the pipes normally wake us.
    auto timeout = std::chrono::milliseconds(200);
    const auto now = Clock::now();
    auto shorten_to = [&](Clock::time_point deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
      timeout = std::clamp(left, std::chrono::milliseconds(0), timeout);
    };
    if (kill_deadline_ && !killed_) shorten_to(*kill_deadline_);
    for (const auto& slot : slots_) {
      if (!slot->process.running() && (slot->out.open() || slot->err.open())) {
        shorten_to(slot->exited_at + options_.drain_after_exit);
      }
    }

    const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
    if (ready < 0) {
      if (errno == EINTR) return;
      throw Error(ErrorKind::system, std::string("poll failed: ") + std::strerror(errno));
    }
    if (fds[0].revents != 0) handle_signals();
    for (std::size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) relays[i - 1]->read_available();
    }
  }

  void handle_signals() {
    for (const int signal : signals_.drain()) {
      if (signal == SIGCHLD) continue;  // only a wake-up; reap_exited() looks
      if (!forwarded_signal_ && !killed_) {
        forwarded_signal_ = true;
        report("received " + signal_name(signal) + "; forwarded it to " +
               std::to_string(running_count()) + " running ranks (send it again to kill them)");
        begin_stop(signal);
      } else if (!killed_) {
        kill_all_now("was still running at a second " + signal_name(signal));
      }
    }
  }

  const SupervisorOptions& options_;
  SignalPipe& signals_;
  OrphanGuard& guard_;
  // unique_ptr: a relay's line handler points into its slot, so slots must not move.
  std::vector<std::unique_ptr<RankSlot>> slots_;
  std::optional<Failure> failure_;
  std::optional<Clock::time_point> kill_deadline_;
  bool forwarded_signal_ = false;
  bool killed_ = false;
};

}  // namespace

Supervisor::Supervisor(SupervisorOptions options, SignalPipe& signals)
    : options_(std::move(options)), signals_(signals) {}

std::vector<RankLaunch> local_launches(const std::vector<std::string>& command,
                                       const JobEnvironment& environment, const std::string& host) {
  std::vector<RankLaunch> launches;
  for (int local = 0; local < environment.layout().local_size; ++local) {
    launches.push_back(RankLaunch{environment.layout().first_rank + local, host, command,
                                  environment.for_local_rank(local)});
  }
  return launches;
}

int Supervisor::run(const std::vector<RankLaunch>& launches) {
  // Before any rank starts, and destroyed after every rank is reaped (it outlives `job`).
  OrphanGuard guard(options_.stop_grace);
  Job job(options_, signals_, guard);
  // If a later rank cannot start, Job's destructor kills and reaps the ones already running.
  job.spawn_all(launches);
  const int code = job.supervise();
  // Every local rank has ended: shared memory its job left in /dev/shm (a rank killed during
  // set-up) can go. Remote ranks' hosts have their own /dev/shm.
  const auto local = std::find_if(launches.begin(), launches.end(),
                                  [](const RankLaunch& launch) { return !launch.remote; });
  if (local != launches.end()) {
    const auto removed = remove_job_segments(job_id_in(local->environment));
    if (!removed.empty() && options_.verbose) {
      report("removed " + std::to_string(removed.size()) +
             " shared-memory segment(s) left in /dev/shm by ranks that did not finish set-up");
    }
  }
  return code;
}

}  // namespace ringfuse::launcher
