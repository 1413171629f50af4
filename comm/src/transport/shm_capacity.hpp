// Whether a shared-memory channel fits in /dev/shm, decided before any segment is created.
// Container runtimes give /dev/shm 64 MiB unless told otherwise (`docker run --shm-size`,
// a Kubernetes `emptyDir{medium: Memory}`), and 8 ranks' 1 MiB rings take 56 MiB per channel:
// the engine's data channel, set up after the main one, used to fail with "reserving ... bytes".
// Instead a channel that does not fit gets smaller rings, or none (TCP), and rank 0 says why.
#pragma once

#include <cstddef>
#include <string>

#include "rendezvous/store.hpp"
#include "ringfuse/context.hpp"
#include "transport/tcp_mesh.hpp"

namespace ringfuse::transport {

/// Smallest rings worth having: below this the per-message overhead outweighs shared memory.
inline constexpr std::size_t kMinShmRingBytes = std::size_t{64} << 10;

/// What one shared-memory channel will use, the same on every rank of it.
struct ShmPlan {
  std::size_t ring_bytes = 0;  // per ordered pair; 0: no room even for the smallest, use TCP
  /// On the channel's rank 0, when the channel got less than it asked for: one warning line
  /// saying what was given up and how to give /dev/shm more room. Empty otherwise.
  std::string warning;
};

/// Bytes of /dev/shm one rank's ring segment takes in a channel of `size` ranks (the rings it
/// receives on, their cursors and the segment header). Defined in shm_transport.cpp, beside
/// the layout it measures, which uses it to size the segments it creates.
std::size_t shm_segment_bytes(int size, std::size_t ring_bytes);

/// The largest of `wanted`, `wanted`/2, ... down to kMinShmRingBytes (or just `wanted` when
/// that is smaller) whose segments, one per rank, fit in `budget_bytes`; 0 when none does.
std::size_t ring_bytes_that_fit(std::size_t budget_bytes, int size, std::size_t wanted);

/// Collective over the `size` ranks of one channel (store keys under mesh.key_prefix): each
/// publishes the free space of its /dev/shm, rank 0 plans for the smallest, and every rank
/// takes rank 0's plan. A channel may use at most half of that free space, so the job leaves
/// room for everything else that uses /dev/shm (data loaders, NCCL, a second channel).
/// With `requested` = shm (RINGFUSE_TRANSPORT=shm) a channel with no room at all throws
/// Error(invalid_config) naming the fix instead of falling back to TCP.
ShmPlan plan_shm_rings(rendezvous::Store& store, const MeshOptions& mesh, int rank, int size,
                       std::size_t wanted_ring_bytes, TransportKind requested);

}  // namespace ringfuse::transport
