// How a TCP rank waits for a peer on its own host (the loopback interface).
//
// A rank with nothing to do sleeps in poll() until its peer's bytes arrive. On this kind of VM
// (guest halt-polling off) a CPU with nothing to run halts, and waking a rank there takes tens
// of microseconds: several times per all-reduce at N = 2, where each 64 KiB piece of the pair
// step waits for the peer's. So, as shared memory's ranks do (shm_transport.cpp), a rank with
// a CPU of its own keeps checking for a while before it sleeps, yielding between checks so
// that a peer put on its CPU runs at once. Only while no task waits for a CPU, though: on a
// busy host the checks take a CPU from another task, perhaps the peer, and a yield may hand
// the CPU to another program for a whole time slice; sleeping at once was faster there
// (perf/RESULTS.md, issue 17, sixth session). Ranks bound to a CPU each are the exception:
// there the checks paid at every size under the same load.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <span>

namespace ringfuse::transport {

/// Whether every task that wants a CPU of this host has one now: the running count of
/// /proc/loadavg (this thread included) against the online CPUs. False when it cannot tell.
bool cpus_to_spare();

/// When a rank whose peer is on this host checks before sleeping.
enum class PeerWaitMode {
  when_cpus_spare,  // only while cpus_to_spare(), or when bound to one CPU: the default
  always,           // whatever else runs on the host (tests; a host that is the job's alone)
};

class PeerWait {
 public:
  using Clock = std::chrono::steady_clock;

  /// How long a rank keeps checking before it sleeps.
  static constexpr std::chrono::microseconds kCheckFor{50};
  /// How long an answer of cpus_to_spare() is used: reading it costs a few microseconds, and
  /// an all-reduce of 1 MiB waits 4-5 times.
  static constexpr std::chrono::microseconds kLoadFor{1000};

  /// `local_ranks`: this rank and the peers it reaches at its own address. When they
  /// outnumber the CPUs this rank may use, it sleeps at once. A rank bound to one CPU (by its
  /// launcher, one CPU a rank) checks whatever the load, unless this host's ranks outnumber
  /// its online CPUs.
  PeerWait(int local_ranks, PeerWaitMode mode);

  /// poll()s `fds` until one is ready or `deadline` passes, returning what poll() returned.
  /// `local` says whether the peer waited for runs on this host.
  int wait(std::span<pollfd> fds, bool local, Clock::time_point deadline);

  /// Waits in which this rank checked before sleeping, and those that ended without a sleep.
  std::uint64_t checked() const { return checked_; }
  std::uint64_t caught() const { return caught_; }

 private:
  /// cpus_to_spare(), read again once kLoadFor has passed.
  bool spare();

  PeerWaitMode mode_;
  bool bound_ = false;  // this rank may run on one CPU only
  bool cpu_each_ = false;
  bool spare_ = false;
  Clock::time_point next_look_{};
  std::uint64_t checked_ = 0;
  std::uint64_t caught_ = 0;
};

}  // namespace ringfuse::transport
