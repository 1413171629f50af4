#include "sharding.hpp"

namespace ringfuse_train {

torch::Tensor shard_indices(std::int64_t n, int rank, int size, std::uint64_t seed, int epoch,
                            bool shuffle) {
  torch::Tensor order;
  if (shuffle) {
    auto generator = at::make_generator<at::CPUGeneratorImpl>(seed + static_cast<std::uint64_t>(epoch));
    order = torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kInt64));
  } else {
    order = torch::arange(n, torch::kInt64);
  }
  const std::int64_t per_rank = (n + size - 1) / size;
  const std::int64_t padded = per_rank * size;
  if (padded > n) order = torch::cat({order, order.slice(0, 0, padded - n)});
  return order.slice(0, rank, padded, size).contiguous();
}

}  // namespace ringfuse_train
