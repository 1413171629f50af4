#include "algo/algorithms.hpp"

namespace ringfuse::algo {

void exchange_and_reduce(Transport& transport, Workspace& workspace, int send_peer,
                         const std::byte* send, std::size_t send_bytes, int recv_peer,
                         std::byte* dst, std::size_t recv_count, DataType type, ReduceOp op) {
  // The transport decides whether received bytes need a landing place before the reduction
  // (TCP) or can be reduced where they already are (shared memory).
  transport.send_recv_reduce(
      send_peer, send, send_bytes, recv_peer, dst, recv_count, type, op,
      [&workspace](std::size_t bytes) { return workspace.get(Workspace::kReceive, bytes); });
}

}  // namespace ringfuse::algo
