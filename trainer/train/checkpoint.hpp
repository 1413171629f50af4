// Checkpoints: rank 0 writes model + optimizer + progress atomically (temporary file, fsync,
// rename), every rank loads the same file to resume.
#pragma once

#include <optional>
#include <string>

#include <torch/torch.h>

namespace ringfuse_train {

struct Progress {
  int next_epoch = 0;
  double last_loss = 0;
};

/// Writes `dir`/checkpoint.pt atomically; returns its path.
std::string save_checkpoint(const std::string& dir, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, const Progress& progress);

/// Loads `dir`/checkpoint.pt into model and optimizer, its tensors onto `device` (where the
/// model lives); std::nullopt when there is none.
std::optional<Progress> load_checkpoint(const std::string& dir, torch::nn::Module& model,
                                        torch::optim::Optimizer& optimizer, torch::Device device);

}  // namespace ringfuse_train
