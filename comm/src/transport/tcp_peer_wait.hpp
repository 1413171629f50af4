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
// Unbound ranks that wake each other over loopback end up on one CPU, as shared memory's do
// (shm_placement.hpp), and then each waits for the other's turn on it: in 100 % of the
// all-reduces measured unbound (seventh session). So a checking rank whose yields handed its
// CPU to another task, after which the peer's bytes were there, moves itself to another CPU
// its mask allows, as shared memory's ranks do; only while it checks, so never on a host
// whose ranks outnumber its CPUs or whose tasks wait for one.
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

  /// How rarely an unbound rank moves off a CPU it seems to share with its peer.
  static constexpr std::chrono::milliseconds kMoveEvery{10};

  /// Waits in which this rank checked before sleeping, and those that ended without a sleep.
  std::uint64_t checked() const { return checked_; }
  std::uint64_t caught() const { return caught_; }
  /// Times this rank moved itself off a CPU that its peer seemed to share.
  std::uint64_t moved() const { return moved_; }

 private:
  /// Called when a wait ended after this rank's yields let another task run on its CPU
  /// (`handovers_before`: its count of such hand-overs when the wait began): moves the rank
  /// to another CPU its affinity mask allows, keeping the mask, unless it moved recently.
  void move_off_a_shared_cpu(long handovers_before);

  /// cpus_to_spare(), read again once kLoadFor has passed.
  bool spare();

  PeerWaitMode mode_;
  bool bound_ = false;  // this rank may run on one CPU only
  bool cpu_each_ = false;
  bool spare_ = false;
  Clock::time_point next_look_{};
  std::uint64_t checked_ = 0;
  std::uint64_t caught_ = 0;
  std::uint64_t moved_ = 0;
  Clock::time_point next_move_{};
};

}  // namespace ringfuse::transport
