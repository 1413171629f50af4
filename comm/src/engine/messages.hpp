// The two messages of a negotiation cycle: each rank's announcement of the collectives that
// became ready since its last cycle (cache index or full fingerprint), and the coordinator's
// response (what runs now, in which order, what failed, join and abort state).
//
// The steady state takes a shorter way (Horovod's bit-vector round, kept in sequence order so
// that a swapped pair of tensors is still caught): when every collective a rank holds is in the
// response cache, it sends only their cache indices, in sequence order, without announcing them.
// If every rank did so and the coordinator has nothing else pending, it answers with how many
// of them every rank agrees on, and each rank releases those from what it holds; the rest stay
// held and go again next cycle. Otherwise the coordinator takes the indices into its table as
// announcements, and the cycle goes the full way.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/fingerprint.hpp"
#include "engine/response_cache.hpp"

namespace ringfuse::engine {

struct Announcement {
  std::uint64_t seq = 0;
  std::optional<std::uint32_t> cache_index;  // set: fp came from (or goes as) a cache index
  Fingerprint fp;
};

struct CycleMessage {
  bool join = false;      // this rank called join() (after its announced collectives)
  bool shutdown = false;  // this rank's engine is being destroyed
  bool busy = false;      // this rank has collectives announced but not finished
  std::vector<Announcement> entries;
  // The short way: the cache indices of the collectives this rank holds, from sequence number
  // `first_seq` on (entries is then empty).
  bool indexed = false;
  std::uint64_t first_seq = 0;
  std::vector<std::uint32_t> indices;

  std::vector<std::uint8_t> encode() const;
  /// Resolves cache indices through `cache` (the coordinator's, identical to the sender's).
  static CycleMessage decode(const std::vector<std::uint8_t>& bytes, const ResponseCache& cache);
};

struct ReadyEntry {
  enum class Kind : std::uint8_t { cached, full, error };
  std::uint64_t seq = 0;
  Kind kind = Kind::full;
  std::uint32_t cache_index = 0;
  Fingerprint fp;                      // resolved on every rank
  // allgather: every rank's dimension 0; alltoallv: every rank's splits, rank after rank
  // (size x size: [r * size + j] rows go from rank r to rank j)
  std::vector<std::int64_t> dim0;
  std::string error;                   // Kind::error: the message every rank reports
};

struct CycleResponse {
  enum class Status : std::uint8_t { ok, abort, shutdown };
  Status status = Status::ok;
  std::string message;                 // abort / shutdown reason
  std::vector<ReadyEntry> ready;       // in sequence order
  std::vector<std::int32_t> joined;    // ranks that joined and contribute identities
  bool join_done = false;              // every rank has joined: complete the join() Works
  std::int32_t last_joined = -1;
  bool world_busy = false;             // some rank still waits on something: keep cycling
  // Set: the short way was taken, and every rank releases this many of the collectives it sent
  // by index (ready is then empty: each rank fills it from what it holds). Unset: whatever was
  // sent by index is now announced, in the coordinator's table.
  std::optional<std::uint32_t> indexed_released;

  std::vector<std::uint8_t> encode() const;
  static CycleResponse decode(const std::vector<std::uint8_t>& bytes, const ResponseCache& cache);
};

}  // namespace ringfuse::engine
