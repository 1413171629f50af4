// The calling thread's CPUs and context switches, for the tests of how ranks wait for a peer
// (shm_wait_test, tcp_wait_test): bind a rank's thread as mpirun binds a rank, keep it busy,
// and count how often it went to sleep or gave its CPU away.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#include <chrono>

#include <gtest/gtest.h>

namespace ringfuse::inproc {

/// Times this thread went to sleep (a wait that ended in the kernel).
inline long voluntary_switches_of_this_thread() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_nvcsw;
}

/// Times this thread gave its CPU away while runnable (a yield that let another run counts).
inline long involuntary_switches_of_this_thread() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_nivcsw;
}

inline int cpus_we_may_use() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (sched_getaffinity(0, sizeof(cpus), &cpus) != 0) return 1;
  return CPU_COUNT(&cpus);
}

/// Binds the calling thread to the `index`-th CPU it may use, as mpirun binds a rank.
inline void bind_this_thread_to(int index) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed), 0);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed) || index-- > 0) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ASSERT_EQ(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
    return;
  }
}

/// The first two CPUs this thread may use, or an empty set when there are fewer.
inline cpu_set_t first_two_cpus() {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  cpu_set_t two;
  CPU_ZERO(&two);
  if (pthread_getaffinity_np(pthread_self(), sizeof(allowed), &allowed) != 0) return two;
  for (int cpu = 0, taken = 0; cpu < CPU_SETSIZE && taken < 2; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) {
      CPU_SET(cpu, &two);
      ++taken;
    }
  }
  return CPU_COUNT(&two) == 2 ? two : cpu_set_t{};
}

/// Keeps this thread running (not sleeping, not yielding) for `how_long`.
inline void busy_wait(std::chrono::microseconds how_long) {
  const auto until = std::chrono::steady_clock::now() + how_long;
  while (std::chrono::steady_clock::now() < until) {
  }
}

}  // namespace ringfuse::inproc
