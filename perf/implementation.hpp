// One thing ringfuse-perf measures: ours (native backend) or a peer (Open MPI, Gloo). The sweep
// calls these in the same order on every rank, so each implementation's collectives match up.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "buffers.hpp"

namespace ringfuse::perf {

/// Where a peer library's ranks meet (Gloo's mesh, NCCL's unique id): the run's rendezvous
/// store, under a key prefix of the peer's own.
struct PeerWorld {
  int rank = 0;
  int size = 1;
  std::string store_host;  // unused in a world of one
  std::uint16_t store_port = 0;
  std::string key_prefix;  // unique per job and peer
  std::string job_secret;  // the store authenticates every connection
  std::chrono::milliseconds timeout{60'000};
};

class Implementation {
 public:
  virtual ~Implementation() = default;

  /// Row label: "ringfuse", "mpi", "mpi+malloc", "gloo".
  virtual std::string name() const = 0;
  /// The `algo` column for this case.
  virtual std::string algo(const CaseSpec& spec) const = 0;
  /// Empty when the case can run; otherwise why not. Must give the same answer on every rank.
  virtual std::string unsupported(const CaseSpec& spec) const = 0;
  /// Untimed set-up for one case (Gloo builds its algorithm object on the buffers here).
  virtual void prepare(const CaseSpec& /*spec*/, Buffers& /*buffers*/) {}
  /// One collective on `buffers`: the timed region.
  virtual void run(const CaseSpec& spec, Buffers& buffers) = 0;
  /// Lines ranks up before each timed iteration; each implementation uses its own barrier, so
  /// another library's barrier skew is never charged to it.
  virtual void barrier() = 0;
  /// Drops per-case state built in prepare().
  virtual void finish() {}
  /// Whether this is ours (the ratio column compares ours against the best peer).
  virtual bool is_ours() const { return false; }
};

}  // namespace ringfuse::perf
