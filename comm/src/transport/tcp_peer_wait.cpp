#include "transport/tcp_peer_wait.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

#include "transport/shm_placement.hpp"
#include "transport/socket.hpp"

namespace ringfuse::transport {
namespace {

/// Times the calling thread gave its CPU to another task while it could have run: a yield
/// that let another run counts.
long handovers_of_this_thread() {
  rusage usage{};
  return ::getrusage(RUSAGE_THREAD, &usage) == 0 ? usage.ru_nivcsw : 0;
}

}  // namespace

bool cpus_to_spare() {
  // Opened once and read with pread(), about 2 us against tens for a wake-up; never closed.
  static const int loadavg = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  static const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (loadavg < 0 || online < 1) return false;
  char text[128];
  const ssize_t n = ::pread(loadavg, text, sizeof(text) - 1, 0);
  if (n <= 0) return false;
  text[n] = '\0';
  // "0.52 0.58 0.59 3/211 12345": the fourth field counts runnable tasks.
  double averages[3];
  long running = 0;
  long tasks = 0;
  if (std::sscanf(text, "%lf %lf %lf %ld/%ld", &averages[0], &averages[1], &averages[2],
                  &running, &tasks) != 5) {
    return false;
  }
  return running <= online;
}

PeerWait::PeerWait(int local_ranks, PeerWaitMode mode) : mode_(mode) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (::sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;  // sleep at once
  const int cpus = CPU_COUNT(&allowed);
  if (cpus == 1) {
    // Bound to one CPU, as ringfuse-run --bind-to core and mpirun bind: the launcher gave
    // each rank its own while there are enough. Checking then takes that CPU only from
    // programs the scheduler put there, and paid under a load of 8.6 as well (1 MiB at
    // N = 2 in 316-334 us against 385-849 sleeping at once; perf/RESULTS.md).
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    bound_ = true;
    cpu_each_ = online > 0 && local_ranks <= online;
  } else {
    cpu_each_ = local_ranks <= cpus;
  }
}

void PeerWait::move_off_a_shared_cpu(long handovers_before) {
  // What the peer awaited arrived while this rank's yields gave its CPU away: the peer most
  // likely ran there. Unbound ranks that wake each other stay on one CPU (the waker's), each
  // waiting for the other's time on it: 1 MiB at N = 2 took 480-510 us so against 310-320 on
  // a CPU each (perf/RESULTS.md, issue 17, seventh session). At most once per kMoveEvery, so
  // a host whose other programs took the CPU cannot keep the rank moving.
  const auto now = Clock::now();
  if (handovers_of_this_thread() == handovers_before) return;
  next_move_ = now + kMoveEvery;
  if (shm::move_this_thread_off(shm::cpu_tag_of_this_thread())) ++moved_;
}

bool PeerWait::spare() {
  const auto now = Clock::now();
  if (now >= next_look_) {
    spare_ = cpus_to_spare();
    next_look_ = now + kLoadFor;
  }
  return spare_;
}

int PeerWait::wait(std::span<pollfd> fds, bool local, Clock::time_point deadline) {
  const auto count = static_cast<nfds_t>(fds.size());
  if (local && cpu_each_ && (bound_ || mode_ == PeerWaitMode::always || spare())) {
    ++checked_;
    // Read only when a move would be allowed (not within kMoveEvery of the last one): a
    // getrusage() call of about 0.5 us here, against tens for a wake-up.
    const long handovers =
        !bound_ && Clock::now() >= next_move_ ? handovers_of_this_thread() : -1;
    const auto until = Clock::now() + kCheckFor;
    bool yielded = false;
    do {
      const int ready = ::poll(fds.data(), count, 0);
      if (ready != 0) {
        caught_ += ready > 0 ? 1 : 0;
        if (ready > 0 && yielded && handovers >= 0) move_off_a_shared_cpu(handovers);
        return ready;
      }
      ::sched_yield();
      yielded = true;
    } while (Clock::now() < until);
  }
  return ::poll(fds.data(), count, poll_timeout_ms(deadline));
}

}  // namespace ringfuse::transport
