// The two messages of a negotiation cycle: each rank's announcement of the collectives that
// became ready since its last cycle (cache index or full fingerprint), and the coordinator's
// response (what runs now, in which order, what failed, join and abort state).
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
  std::vector<std::int64_t> dim0;      // allgather: every rank's dimension 0
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

  std::vector<std::uint8_t> encode() const;
  static CycleResponse decode(const std::vector<std::uint8_t>& bytes, const ResponseCache& cache);
};

}  // namespace ringfuse::engine
