#include <cstring>

#include "algo/algorithms.hpp"

namespace ringfuse::algo {
namespace {

// Above this, moving log2(N) whole copies through the tree costs more than scattering blocks
// and all-gathering them around the ring (about two copies' worth per rank).
constexpr std::size_t kScatterAllgatherBytes = std::size_t{256} << 10;

void binomial_broadcast(Transport& transport, std::byte* data, std::size_t bytes, int root) {
  const int size = transport.size();
  const int relative = wrap(transport.rank() - root, size);
  int mask = 1;
  while (mask < size) {
    if (relative & mask) {
      transport.recv(wrap(relative - mask + root, size), data, bytes);
      break;
    }
    mask <<= 1;
  }
  for (mask >>= 1; mask > 0; mask >>= 1) {
    if (relative + mask < size) transport.send(wrap(relative + mask + root, size), data, bytes);
  }
}

void scatter_allgather_broadcast(Transport& transport, std::byte* data, std::size_t bytes,
                                 int root) {
  const int size = transport.size();
  const int rank = transport.rank();
  const auto blocks = even_blocks(bytes, size);
  if (rank == root) {
    for (int peer = 0; peer < size; ++peer) {
      if (peer != root) transport.send(peer, data + blocks[peer].offset, blocks[peer].count);
    }
  } else {
    transport.recv(root, data + blocks[rank].offset, blocks[rank].count);
  }
  ring_allgather(transport, data, 1, blocks, -1);
}

}  // namespace

void broadcast(Transport& transport, std::byte* data, std::size_t bytes, int root) {
  if (transport.size() == 1 || bytes == 0) return;
  if (bytes >= kScatterAllgatherBytes && transport.size() > 2) {
    scatter_allgather_broadcast(transport, data, bytes, root);
  } else {
    binomial_broadcast(transport, data, bytes, root);
  }
}

}  // namespace ringfuse::algo
