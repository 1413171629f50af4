// Start every rank from rank 0's model and optimizer (Horovod's broadcast_parameters and
// broadcast_optimizer_state), so data-parallel replicas begin identical.
#pragma once

#include <torch/torch.h>

#include <ringfuse/context.hpp>

namespace ringfuse_torch {

/// Copies `root`'s parameters and buffers into every rank's `module`, in place.
void broadcast_parameters(ringfuse::Context& ctx, torch::nn::Module& module, int root = 0);

/// Copies `root`'s optimizer state (momentum buffers, Adam moments, step counts, options) to
/// every rank, by serialising it on the root and loading it everywhere else.
void broadcast_optimizer_state(ringfuse::Context& ctx, torch::optim::Optimizer& optimizer,
                               int root = 0);

}  // namespace ringfuse_torch
