// Point-to-point byte movement between the ranks of one world, as the algorithms see it.
// Every call is blocking, bounded by the transport's operation deadline, and throws
// ringfuse::Error naming the peer when a peer fails.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

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

  /// Labels the collective in progress ("allreduce #12 f32[1024] sum") for error messages.
  virtual void set_operation(std::string label) = 0;

  void send(int peer, const void* buf, std::size_t bytes) {
    send_recv(peer, buf, bytes, kNoPeer, nullptr, 0);
  }
  void recv(int peer, void* buf, std::size_t bytes, const RecvProgress& progress = {}) {
    send_recv(kNoPeer, nullptr, 0, peer, buf, bytes, progress);
  }
};

}  // namespace ringfuse::transport
