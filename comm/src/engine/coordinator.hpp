// Rank 0's side of negotiation (Horovod's coordinator, matched by sequence number): collects
// every rank's announcements into a table, releases each collective once every rank that has
// not joined announced it, and turns disagreeing fingerprints into one error for all ranks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "engine/messages.hpp"
#include "engine/response_cache.hpp"
#include "engine/stall_inspector.hpp"

namespace ringfuse::engine {

class Coordinator {
 public:
  Coordinator(int size, const ResponseCache& cache) : size_(size), cache_(cache), joined_(size), busy_(size) {}

  void receive(int rank, CycleMessage message, Clock::time_point now);
  /// The response to the cycle whose messages were all received.
  CycleResponse respond();
  /// The collectives waiting for some rank, for the stall inspector.
  std::vector<WaitingCollective> waiting() const;

 private:
  struct Pending {
    std::vector<std::optional<Fingerprint>> by_rank;
    // The cache index each rank announced it by (kNotCached: a full fingerprint): when every
    // rank used the same one, the fingerprints agree without being compared.
    std::vector<std::int64_t> index_by_rank;
    Clock::time_point since;
  };
  static constexpr std::int64_t kNotCached = -1;
  ReadyEntry release(std::uint64_t seq, Pending& pending) const;

  int size_;
  const ResponseCache& cache_;
  std::map<std::uint64_t, Pending> table_;
  std::vector<bool> joined_;
  std::vector<bool> busy_;
  int last_joined_ = -1;
  std::optional<int> shutdown_rank_;
  std::uint64_t next_release_ = 1;
};

}  // namespace ringfuse::engine
