// Point-to-point byte movement between the ranks of one world, as the algorithms see it.
// Every call is blocking, bounded by the transport's operation deadline, and throws
// ringfuse::Error naming the peer when a peer fails.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <functional>
#include <string>

#include "reduce/reduce.hpp"
#include "ringfuse/error.hpp"
#include "ringfuse/types.hpp"
#include "transport/peer_memory.hpp"
#include "transport/pieces.hpp"
#include "transport/shared_window.hpp"

namespace ringfuse::transport {

inline constexpr int kNoPeer = -1;

class Transport {
 public:
  /// Called while receiving with the number of bytes of the receive buffer that have arrived so
  /// far (monotonic, always the full amount last), so an algorithm can reduce as data arrives.
  using RecvProgress = std::function<void(std::size_t bytes_received)>;

  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  /// Sends `send_bytes` to `send_peer` while receiving `recv_bytes` from `recv_peer`; both
  /// directions progress together so rings and pairwise exchanges cannot deadlock. Either peer
  /// may be kNoPeer (or the byte count zero) to only send or only receive.
  virtual void send_recv(int send_peer, const void* send_buf, std::size_t send_bytes,
                         int recv_peer, void* recv_buf, std::size_t recv_bytes,
                         const RecvProgress& progress = {}) = 0;

  /// Hands out scratch of at least the given number of bytes, kept between calls.
  using Staging = std::function<std::byte*(std::size_t bytes)>;

  /// Sends `send_bytes` to `send_peer` while receiving `recv_count` elements of `type` from
  /// `recv_peer` and reducing them into `dst` (dst[i] = op(dst[i], received[i])) as they
  /// arrive: the pipelined step every reducing algorithm is made of. The default lands the
  /// bytes in `staging` and reduces behind the receive; a transport whose received bytes are
  /// already addressable (shared memory) reduces straight out of them and never asks for
  /// staging.
  virtual void send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                                int recv_peer, void* dst, std::size_t recv_count, DataType type,
                                ReduceOp op, const Staging& staging) {
    const std::size_t element_bytes = element_size(type);
    const std::size_t recv_bytes = recv_peer == kNoPeer ? 0 : recv_count * element_bytes;
    std::byte* landed = recv_bytes > 0 ? staging(recv_bytes) : nullptr;
    auto* out = static_cast<std::byte*>(dst);
    std::size_t reduced = 0;
    // Reduce each whole element as soon as it has arrived, while the rest is still in flight.
    auto reduce_arrived = [&](std::size_t bytes_received) {
      const std::size_t arrived = bytes_received / element_bytes;
      if (arrived > reduced) {
        reduce::reduce_into(out + reduced * element_bytes, landed + reduced * element_bytes,
                            arrived - reduced, type, op);
        reduced = arrived;
      }
    };
    send_recv(send_peer, send_buf, send_bytes, recv_peer, landed, recv_bytes, reduce_arrived);
    if (recv_bytes > 0) reduce_arrived(recv_bytes);
  }

  /// Applied to each reduced piece before it goes back to the peer (the division of avg).
  using Finish = std::function<void(std::byte* data, std::size_t count)>;

  /// The innermost step of a halving-doubling all-reduce with one `peer` (all of it at N = 2):
  /// sends `give` (the peer's half, as this rank holds it), reduces the peer's copy of `keep`
  /// into `keep`, applies `finish` to it and sends it back, while receiving the peer's
  /// finished `give` into `give`. Both ranks call it with their halves swapped. The default
  /// runs the two halves one after the other; a transport that keeps one byte stream per peer
  /// (a TCP connection, a shared-memory ring) interleaves them (return_schedule.hpp), so each
  /// reduced piece leaves while it is still in cache and the second half needs no second
  /// round trip.
  virtual void reduce_and_return(int peer, std::byte* give, std::size_t give_count,
                                 std::byte* keep, std::size_t keep_count, DataType type,
                                 ReduceOp op, const Staging& staging, const Finish& finish) {
    const std::size_t element_bytes = element_size(type);
    send_recv_reduce(peer, give, give_count * element_bytes, peer, keep, keep_count, type, op,
                     staging);
    if (finish && keep_count > 0) finish(keep, keep_count);
    send_recv(peer, keep, keep_count * element_bytes, peer, give, give_count * element_bytes);
  }

  /// Whether the *_pieces calls below copy straight from and to the pieces (shared memory),
  /// rather than through a gathered copy (the defaults): only then is handing over a fused
  /// group in pieces cheaper than packing it.
  virtual bool copies_pieces() const { return false; }

  /// send_recv over buffers that lie in several places (pieces.hpp). The default gathers the
  /// pieces into `staging` and scatters what arrives out of it (one piece each way needs no
  /// copy); a transport that copies into and out of its own memory anyway (shared memory)
  /// copies straight from and to the pieces.
  virtual void send_recv_pieces(int send_peer, Pieces send, int recv_peer, Pieces recv,
                                const Staging& staging) {
    if (send.size() <= 1 && recv.size() <= 1) {
      send_recv(send_peer, send.empty() ? nullptr : send.front().data, total_bytes(send),
                recv_peer, recv.empty() ? nullptr : recv.front().data, total_bytes(recv));
      return;
    }
    const std::size_t send_bytes = total_bytes(send);
    const std::size_t recv_at = staging_offset(send_bytes);
    std::byte* base = staging(recv_at + total_bytes(recv));
    gather(send, base);
    send_recv(send_peer, base, send_bytes, recv_peer, base + recv_at, total_bytes(recv));
    scatter(base + recv_at, recv);
  }

  /// send_recv_reduce over buffers that lie in several places: `dst`'s pieces hold whole
  /// elements and receive dst[i] = op(dst[i], received[i]). The default gathers into
  /// `staging` as send_recv_pieces does.
  virtual void send_recv_reduce_pieces(int send_peer, Pieces send, int recv_peer, Pieces dst,
                                       DataType type, ReduceOp op, const Staging& staging) {
    const std::size_t element_bytes = element_size(type);
    const std::size_t dst_bytes = total_bytes(dst);
    if (send.size() <= 1 && dst.size() <= 1) {
      send_recv_reduce(send_peer, send.empty() ? nullptr : send.front().data, total_bytes(send),
                       recv_peer, dst.empty() ? nullptr : dst.front().data,
                       dst_bytes / element_bytes, type, op, staging);
      return;
    }
    // [send gathered | dst gathered | where the received bytes land]
    const std::size_t dst_at = staging_offset(total_bytes(send));
    const std::size_t landing_at = dst_at + staging_offset(dst_bytes);
    std::byte* base = staging(landing_at + dst_bytes);
    gather(send, base);
    gather(dst, base + dst_at);
    send_recv_reduce(send_peer, base, total_bytes(send), recv_peer, base + dst_at,
                     dst_bytes / element_bytes, type, op,
                     [&](std::size_t) { return base + landing_at; });
    scatter(base + dst_at, dst);
  }

  /// Memory every rank maps (shared memory on one host, when the transport was asked for a
  /// window), or null.
  virtual SharedWindow* shared_window() { return nullptr; }

  /// The peers' private memory, read and written in place (shared memory on one host, where
  /// the kernel lets the ranks reach each other's memory and the transport was asked to), or
  /// null.
  virtual PeerMemory* peer_memory() { return nullptr; }

  /// Waits at most `timeout` for `peer`'s next bytes without taking them: true when a
  /// receive from `peer` would progress now (data, or a closed connection that the receive
  /// then reports), false when nothing came. A quiet peer is not an error here, so a caller
  /// that polls (the engine's control channel) needs no timeout exception and leaves the
  /// transport healthy. Throws only what a receive would throw before it starts (a failed
  /// world, an invalid peer), or invalid_argument from a transport that cannot wait so.
  virtual bool wait_readable(int peer, std::chrono::microseconds timeout) {
    (void)timeout;
    throw Error(ErrorKind::invalid_argument,
                "rank " + std::to_string(rank()) + ": this transport cannot wait for rank " +
                    std::to_string(peer) + "'s bytes without receiving them; use TCP",
                rank(), peer);
  }

  /// Labels the collective in progress ("allreduce #12 f32[1024] sum") for error messages.
  virtual void set_operation(std::string label) = 0;

  void send(int peer, const void* buf, std::size_t bytes) {
    send_recv(peer, buf, bytes, kNoPeer, nullptr, 0);
  }
  void recv(int peer, void* buf, std::size_t bytes, const RecvProgress& progress = {}) {
    send_recv(kNoPeer, nullptr, 0, peer, buf, bytes, progress);
  }

 private:
  static std::size_t staging_offset(std::size_t bytes) { return (bytes + 63) / 64 * 64; }
  static void gather(Pieces pieces, std::byte* to) {
    for (const Piece& piece : pieces) {
      if (piece.bytes > 0) std::memcpy(to, piece.data, piece.bytes);
      to += piece.bytes;
    }
  }
  static void scatter(const std::byte* from, Pieces pieces) {
    for (const Piece& piece : pieces) {
      if (piece.bytes > 0) std::memcpy(piece.data, from, piece.bytes);
      from += piece.bytes;
    }
  }
};

}  // namespace ringfuse::transport
