// Peer: Gloo's own collectives over Gloo's TCP transport (loopback here), rendezvoused through
// GlooStoreAdapter. Two row slots per collective, each one of the Gloo algorithms Debian's
// libgloo-dev (0.0~git20220518) ships for it:
//   allreduce      ring_chunked (AllreduceRingChunked), halving_doubling (AllreduceHalvingDoubling)
//   broadcast      binomial_tree (gloo::broadcast), one_to_all (BroadcastOneToAll)
//   allgather      ring (gloo::allgather), ring_legacy (AllgatherRing)
//   reducescatter  halving_doubling (ReduceScatterHalvingDoubling); no second algorithm
//   alltoall       pairwise (gloo::alltoall); no second algorithm (alltoallv is the same exchange)
//   barrier        dissemination (gloo::barrier), all_to_all (BarrierAllToAll)
// A slot with nothing to run says so once in the table's header ("not measured: ...").
// Set-up grows every socket's send buffer once (see grow_send_buffers in gloo_peer.cpp): without
// it Gloo's unbound-buffer collectives crawl at one segment per delayed ACK.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "implementation.hpp"

namespace ringfuse::perf {

struct GlooPeers {
  std::vector<std::unique_ptr<Implementation>> impls;  // the two slots above
  std::string unavailable;                             // why not, when impls is empty
};

/// Connects one Gloo context (a full TCP mesh) shared by every algorithm. Collective: every
/// rank must call it.
GlooPeers make_gloo_peers(const PeerWorld& world);

}  // namespace ringfuse::perf
