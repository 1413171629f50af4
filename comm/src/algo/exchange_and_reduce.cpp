#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {

void exchange_and_reduce(Transport& transport, Workspace& workspace, int send_peer,
                         const std::byte* send, std::size_t send_bytes, int recv_peer,
                         std::byte* dst, std::size_t recv_count, DataType type, ReduceOp op) {
  const std::size_t element_bytes = element_size(type);
  std::byte* staging = workspace.get(Workspace::kReceive, recv_count * element_bytes);
  std::size_t reduced = 0;
  // Reduce each whole element as soon as it has arrived, while the rest is still in flight.
  auto reduce_arrived = [&](std::size_t bytes_received) {
    const std::size_t arrived = bytes_received / element_bytes;
    if (arrived > reduced) {
      reduce::reduce_into(dst + reduced * element_bytes, staging + reduced * element_bytes,
                          arrived - reduced, type, op);
      reduced = arrived;
    }
  };
  transport.send_recv(send_peer, send, send_bytes, recv_peer, staging,
                      recv_count * element_bytes, reduce_arrived);
  reduce_arrived(recv_count * element_bytes);
}

}  // namespace ringfuse::algo
