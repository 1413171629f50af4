// The sample models: a two-layer perceptron and a small convolutional network, both sized for
// a 2-core machine (an epoch of Fashion-MNIST in well under a minute per rank).
#pragma once

#include <string>

#include <torch/torch.h>

namespace ringfuse_train {

/// "mlp" or "cnn" for images of 1×side×side and `classes` outputs; throws for another name.
std::shared_ptr<torch::nn::Module> make_model(const std::string& name, int side, int classes);

/// Runs the model made by make_model.
torch::Tensor forward(torch::nn::Module& model, const torch::Tensor& images);

}  // namespace ringfuse_train
