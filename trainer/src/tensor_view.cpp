#include "ringfuse_torch/tensor_view.hpp"

#include <string>

namespace ringfuse_torch {

ringfuse::DataType data_type_of(torch::ScalarType type) {
  switch (type) {
    case torch::kHalf: return ringfuse::DataType::f16;
    case torch::kBFloat16: return ringfuse::DataType::bf16;
    case torch::kFloat: return ringfuse::DataType::f32;
    case torch::kDouble: return ringfuse::DataType::f64;
    case torch::kInt8: return ringfuse::DataType::i8;
    case torch::kUInt8: return ringfuse::DataType::u8;
    case torch::kInt32: return ringfuse::DataType::i32;
    case torch::kInt64: return ringfuse::DataType::i64;
    case torch::kInt16: return ringfuse::DataType::i16;
    case torch::kBool: return ringfuse::DataType::boolean;  // one byte, 0 or 1, as ours
    default:
      throw ringfuse::Error(ringfuse::ErrorKind::invalid_argument,
                            std::string("torch dtype ") + c10::toString(type) +
                                " has no Ringfuse equivalent; convert the tensor first");
  }
}

ringfuse::TensorView view_of(const torch::Tensor& tensor) {
  if (!tensor.is_contiguous()) {
    throw ringfuse::Error(ringfuse::ErrorKind::invalid_argument,
                          "Ringfuse collectives need contiguous tensors; call .contiguous()");
  }
  ringfuse::TensorView view;
  view.data = tensor.data_ptr();
  view.dtype = data_type_of(tensor.scalar_type());
  view.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
  view.device = tensor.is_cuda() ? ringfuse::Device::cuda : ringfuse::Device::cpu;
  view.device_index = tensor.is_cuda() ? tensor.get_device() : 0;
  return view;
}

}  // namespace ringfuse_torch
