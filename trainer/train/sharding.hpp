// Which samples each rank sees (PyTorch's DistributedSampler): one permutation per epoch,
// drawn from the same seed on every rank, dealt round-robin; padded by wrapping so every rank
// takes the same number of steps (uneven step counts would leave a rank's all-reduce alone).
#pragma once

#include <cstdint>

#include <torch/torch.h>

namespace ringfuse_train {

/// Indices for `rank` of `size` in `epoch`: ceil(n / size) of them.
torch::Tensor shard_indices(std::int64_t n, int rank, int size, std::uint64_t seed, int epoch,
                            bool shuffle = true);

}  // namespace ringfuse_train
