#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {

void hierarchical_allreduce(Transport& local, Transport& cross, Workspace& workspace,
                            const ReduceBuffer& buffer) {
  const std::size_t element_bytes = element_size(buffer.type);
  // avg is a sum everywhere, divided once by the whole world at the end.
  const ReduceOp op = buffer.op == ReduceOp::avg ? ReduceOp::sum : buffer.op;
  const auto blocks = even_blocks(buffer.count, local.size());
  // shift -1: afterwards local rank r holds the host's sum of block r.
  if (local.size() > 1) {
    ring_reduce_scatter(local, workspace, ReduceBuffer{buffer.data, buffer.count, buffer.type, op},
                        blocks, -1);
  }
  const Block& own = blocks[static_cast<std::size_t>(local.rank())];
  std::byte* own_data = buffer.data + own.offset * element_bytes;
  if (cross.size() > 1 && own.count > 0) {
    const ReduceBuffer slice{own_data, own.count, buffer.type, op};
    allreduce(Algorithm::automatic, cross, workspace, slice);
  }
  if (buffer.op == ReduceOp::avg && own.count > 0) {
    reduce::divide(own_data, own.count, buffer.type,
                   static_cast<std::size_t>(local.size()) * static_cast<std::size_t>(cross.size()));
  }
  if (local.size() > 1) ring_allgather(local, buffer.data, element_bytes, blocks, -1);
}

}  // namespace ringfuse::algo
