#include "algo/algorithms.hpp"

namespace ringfuse::algo {
namespace {

// Latency dominates below this: the tree's 2·log2(N) steps beat the ring's 2(N-1).
constexpr std::size_t kTreeMaxBytes = std::size_t{32} << 10;
// Between the two, halving-doubling moves the ring's bytes in log2(N) steps.
constexpr std::size_t kRhdMaxBytes = std::size_t{1} << 20;

}  // namespace

Algorithm choose_allreduce(std::size_t bytes, std::size_t count, int world_size) {
  if (bytes <= kTreeMaxBytes || count < static_cast<std::size_t>(world_size)) {
    return Algorithm::tree;
  }
  if (bytes <= kRhdMaxBytes) return Algorithm::rhd;
  return Algorithm::ring;
}

}  // namespace ringfuse::algo
