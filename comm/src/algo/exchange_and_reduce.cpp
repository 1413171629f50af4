#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

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

void reduce_and_return(Transport& transport, Workspace& workspace, int peer,
                       const ReduceBuffer& buffer, const Block& give, const Block& keep,
                       std::size_t divisor) {
  const std::size_t element_bytes = element_size(buffer.type);
  const DataType type = buffer.type;
  Transport::Finish finish;
  if (buffer.op == ReduceOp::avg && divisor > 0) {
    finish = [type, divisor](std::byte* data, std::size_t count) {
      reduce::divide(data, count, type, divisor);
    };
  }
  transport.reduce_and_return(
      peer, buffer.data + give.offset * element_bytes, give.count,
      buffer.data + keep.offset * element_bytes, keep.count, type, buffer.op,
      [&workspace](std::size_t bytes) { return workspace.get(Workspace::kReceive, bytes); },
      finish);
}

}  // namespace ringfuse::algo
