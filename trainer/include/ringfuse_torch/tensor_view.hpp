// The seam between libtorch tensors and Ringfuse: a TensorView of a tensor's own memory.
#pragma once

#include <torch/torch.h>

#include <ringfuse/engine.hpp>

namespace ringfuse_torch {

/// The Ringfuse element type of a torch dtype; throws ringfuse::Error for unsupported ones.
ringfuse::DataType data_type_of(torch::ScalarType type);

/// A view of `tensor` (which must be contiguous and stay alive until the collective completes).
ringfuse::TensorView view_of(const torch::Tensor& tensor);

}  // namespace ringfuse_torch
