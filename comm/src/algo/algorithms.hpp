// The collective algorithms, each a function over an abstract Transport (one per file, in the
// spirit of Gloo's allreduce_ring.h / allreduce_halving_doubling.h). All are blocking and
// in place unless stated; every rank of the transport's world must call the same one.
#pragma once

#include <cstddef>
#include <span>

#include "algo/partition.hpp"
#include "algo/scattered_buffer.hpp"
#include "algo/workspace.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/types.hpp"
#include "transport/peer_memory.hpp"
#include "transport/transport.hpp"

namespace ringfuse::algo {

using transport::Transport;

/// The buffer an algorithm reduces over, with its element type and operator.
struct ReduceBuffer {
  std::byte* data;
  std::size_t count;
  DataType type;
  ReduceOp op;
};

/// Ring all-reduce: reduce-scatter then all-gather, N-1 steps each, receiving and reducing
/// in pipelined chunks. Bandwidth-optimal: each rank sends 2(N-1)/N of the buffer.
void ring_allreduce(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer);

/// Binomial-tree reduce to rank 0, then binomial broadcast: 2·log2(N) steps, for small buffers.
void tree_allreduce(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer);

/// Rabenseifner's recursive halving (reduce-scatter) and doubling (all-gather), folding the
/// ranks beyond the largest power of two into their neighbours first.
void rhd_allreduce(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer);
/// The same over elements that lie in several places (a fused group's tensors, in place): the
/// transport copies each piece into and out of its own memory, so nothing is packed first.
void rhd_allreduce(Transport& transport, Workspace& workspace, const ScatteredBuffer& buffer);

/// Two-level all-reduce for ranks spread over hosts: ring reduce-scatter among the ranks of
/// this host (`local`, shared memory where it can), an all-reduce of this rank's block among
/// the ranks with the same local rank on every host (`cross`, TCP), then a ring all-gather on
/// the host. Only 1/local_size of the buffer crosses the network from each rank.
void hierarchical_allreduce(Transport& local, Transport& cross, Workspace& workspace,
                            const ReduceBuffer& buffer);

/// All-reduce of a buffer that lies in every rank's SharedWindow at the same `offset`: each
/// rank reduces its block straight out of the peers' windows, then copies the other blocks
/// out of their owners' windows, with a window barrier before, between and after. Nothing
/// goes through a transport's rings, so it moves about half the bytes of a ring through them
/// (N = 2) and less still for more ranks.
void window_allreduce(transport::SharedWindow& window, std::size_t offset,
                      const ReduceBuffer& buffer);

/// All-reduce of buffers in each rank's private memory, read and written across processes
/// (transport::PeerMemory): the buffer is cut into pieces of 128 KiB that any rank claims; the
/// claimer reads every rank's copy of its piece, reduces them in rank order and writes the
/// result back to every rank. Two waits in all (every rank's buffer is open, every piece is
/// done) instead of a ring's 2(N-1) chained steps, and a rank that is not running delays no
/// piece but its own claims: made for ranks that share a host's CPUs with compute threads.
void cross_memory_allreduce(transport::PeerMemory& memory, Workspace& workspace,
                            const ReduceBuffer& buffer);
/// How many pieces cross_memory_allreduce cuts `count` elements of `type` into.
std::size_t cross_memory_pieces(std::size_t count, DataType type);

/// Ring reduce-scatter over `blocks` of buffer.data, in place. Afterwards this rank's block
/// wrap(rank + 1 + shift) holds the reduction (as a sum for avg: the caller divides).
void ring_reduce_scatter(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer,
                         std::span<const Block> blocks, int shift);

/// Ring all-gather over `blocks` of `data` (element size `element_bytes`), in place, when every
/// rank holds block wrap(rank + 1 + shift).
void ring_allgather(Transport& transport, std::byte* data, std::size_t element_bytes,
                    std::span<const Block> blocks, int shift);

/// Broadcast of `bytes` from `root`: binomial tree for small buffers, scatter + ring all-gather
/// for large ones.
void broadcast(Transport& transport, std::byte* data, std::size_t bytes, int root);

/// Pairwise exchange: N-1 steps, step s sends to rank+s and receives from rank-s.
void alltoallv(Transport& transport, const std::byte* send, std::span<const Block> send_blocks,
               std::byte* recv, std::span<const Block> recv_blocks, std::size_t element_bytes);

/// Dissemination barrier: ceil(log2 N) rounds of one-byte messages.
void barrier(Transport& transport);

/// The algorithm RINGFUSE_ALGO=auto uses for an all-reduce of `bytes` over `world_size` ranks.
Algorithm choose_allreduce(std::size_t bytes, std::size_t count, int world_size);

/// The one dispatch from an Algorithm to its function: runs `algorithm` over the whole
/// transport (Algorithm::automatic: choose_allreduce by size) and returns the one that ran.
Algorithm allreduce(Algorithm algorithm, Transport& transport, Workspace& workspace,
                    const ReduceBuffer& buffer);

/// Sends `send_bytes` to `send_peer` while receiving `recv_count` elements from `recv_peer`
/// and reducing them into `dst` as they arrive (the pipelining every reducing algorithm uses).
void exchange_and_reduce(Transport& transport, Workspace& workspace, int send_peer,
                         const std::byte* send, std::size_t send_bytes, int recv_peer,
                         std::byte* dst, std::size_t recv_count, DataType type, ReduceOp op);

/// The last halving and first doubling step with one `peer` as one exchange
/// (Transport::reduce_and_return), over the blocks `give` and `keep` of `buffer`: sends
/// `give`, reduces the peer's copy of `keep` into it, divides it by `divisor` for avg (not when
/// 0), and sends it back while receiving the peer's finished `give`.
void reduce_and_return(Transport& transport, Workspace& workspace, int peer,
                       const ReduceBuffer& buffer, const Block& give, const Block& keep,
                       std::size_t divisor);

}  // namespace ringfuse::algo
