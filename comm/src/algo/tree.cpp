#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {

void tree_allreduce(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer) {
  const int size = transport.size();
  const int rank = transport.rank();
  const std::size_t bytes = buffer.count * element_size(buffer.type);
  // Binomial reduce towards rank 0: at distance `mask`, ranks with that bit set hand their
  // partial result down and drop out.
  for (int mask = 1; mask < size; mask <<= 1) {
    if (rank & mask) {
      transport.send(rank - mask, buffer.data, bytes);
      break;
    }
    if (rank + mask < size) {
      exchange_and_reduce(transport, workspace, transport::kNoPeer, nullptr, 0, rank + mask,
                          buffer.data, buffer.count, buffer.type, buffer.op);
    }
  }
  if (rank == 0 && buffer.op == ReduceOp::avg) {
    reduce::divide(buffer.data, buffer.count, buffer.type, static_cast<std::size_t>(size));
  }
  broadcast(transport, buffer.data, bytes, 0);
}

}  // namespace ringfuse::algo
