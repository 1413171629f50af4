#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {

void ring_reduce_scatter(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer,
                         std::span<const Block> blocks, int shift) {
  const int size = transport.size();
  const int rank = transport.rank();
  const std::size_t element_bytes = element_size(buffer.type);
  const int right = wrap(rank + 1, size);
  const int left = wrap(rank - 1, size);
  for (int step = 0; step < size - 1; ++step) {
    // Block sent now was completed by the previous step's receive.
    const Block& out = blocks[wrap(rank - step + shift, size)];
    const Block& in = blocks[wrap(rank - step - 1 + shift, size)];
    exchange_and_reduce(transport, workspace, right, buffer.data + out.offset * element_bytes,
                        out.count * element_bytes, left,
                        buffer.data + in.offset * element_bytes, in.count, buffer.type,
                        buffer.op);
  }
}

void ring_allgather(Transport& transport, std::byte* data, std::size_t element_bytes,
                    std::span<const Block> blocks, int shift) {
  const int size = transport.size();
  const int rank = transport.rank();
  const int right = wrap(rank + 1, size);
  const int left = wrap(rank - 1, size);
  for (int step = 0; step < size - 1; ++step) {
    const Block& out = blocks[wrap(rank + 1 + shift - step, size)];
    const Block& in = blocks[wrap(rank + shift - step, size)];
    transport.send_recv(right, data + out.offset * element_bytes, out.count * element_bytes,
                        left, data + in.offset * element_bytes, in.count * element_bytes);
  }
}

void ring_allreduce(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer) {
  const int size = transport.size();
  const auto blocks = even_blocks(buffer.count, size);
  if (size == 2) {
    // Both steps with the one neighbour there is, pipelined: each reduced piece goes back
    // while it is in cache. Same blocks as below: this rank gives its own and keeps the next.
    const int rank = transport.rank();
    reduce_and_return(transport, workspace, wrap(rank + 1, size), buffer, blocks[rank],
                      blocks[wrap(rank + 1, size)], static_cast<std::size_t>(size));
    return;
  }
  ring_reduce_scatter(transport, workspace, buffer, blocks, 0);
  if (buffer.op == ReduceOp::avg) {
    const Block& owned = blocks[wrap(transport.rank() + 1, size)];
    reduce::divide(buffer.data + owned.offset * element_size(buffer.type), owned.count,
                   buffer.type, static_cast<std::size_t>(size));
  }
  ring_allgather(transport, buffer.data, element_size(buffer.type), blocks, 0);
}

}  // namespace ringfuse::algo
