#include <cstring>

#include "algo/algorithms.hpp"

namespace ringfuse::algo {

void alltoallv(Transport& transport, const std::byte* send, std::span<const Block> send_blocks,
               std::byte* recv, std::span<const Block> recv_blocks, std::size_t element_bytes) {
  const int size = transport.size();
  const int rank = transport.rank();
  const Block& own_out = send_blocks[rank];
  if (own_out.count > 0) {
    std::memcpy(recv + recv_blocks[rank].offset * element_bytes,
                send + own_out.offset * element_bytes, own_out.count * element_bytes);
  }
  for (int step = 1; step < size; ++step) {
    const int to = wrap(rank + step, size);
    const int from = wrap(rank - step, size);
    transport.send_recv(to, send + send_blocks[to].offset * element_bytes,
                        send_blocks[to].count * element_bytes, from,
                        recv + recv_blocks[from].offset * element_bytes,
                        recv_blocks[from].count * element_bytes);
  }
}

}  // namespace ringfuse::algo
