#include "algo/algorithms.hpp"

namespace ringfuse::algo {

void barrier(Transport& transport) {
  const int size = transport.size();
  const int rank = transport.rank();
  const std::byte token{1};
  std::byte received{0};
  for (int distance = 1; distance < size; distance <<= 1) {
    transport.send_recv(wrap(rank + distance, size), &token, 1, wrap(rank - distance, size),
                        &received, 1);
  }
}

}  // namespace ringfuse::algo
