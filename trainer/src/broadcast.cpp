#include "ringfuse_torch/broadcast.hpp"

#include <cstdint>
#include <sstream>
#include <string>

#include "ringfuse_torch/tensor_view.hpp"

namespace ringfuse_torch {
namespace {

void broadcast_tensor(ringfuse::Context& ctx, torch::Tensor tensor, int root) {
  torch::NoGradGuard no_grad;
  // Parameters are contiguous in practice; a strided one goes through a temporary.
  torch::Tensor buffer = tensor.is_contiguous() ? tensor : tensor.contiguous();
  const auto view = view_of(buffer);
  ctx.broadcast(view.data, view.numel(), view.dtype, root);
  if (!buffer.is_same(tensor)) tensor.copy_(buffer);
}

void broadcast_bytes(ringfuse::Context& ctx, std::string& bytes, int root) {
  std::int64_t size = static_cast<std::int64_t>(bytes.size());
  ctx.broadcast(&size, 1, ringfuse::DataType::i64, root);
  bytes.resize(static_cast<std::size_t>(size));
  ctx.broadcast(bytes.data(), bytes.size(), ringfuse::DataType::u8, root);
}

}  // namespace

void broadcast_parameters(ringfuse::Context& ctx, torch::nn::Module& module, int root) {
  for (auto& parameter : module.parameters()) broadcast_tensor(ctx, parameter, root);
  for (auto& buffer : module.buffers()) broadcast_tensor(ctx, buffer, root);
}

void broadcast_optimizer_state(ringfuse::Context& ctx, torch::optim::Optimizer& optimizer,
                               int root) {
  std::string bytes;
  if (ctx.rank() == root) {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    std::ostringstream out;
    archive.save_to(out);
    bytes = out.str();
  }
  broadcast_bytes(ctx, bytes, root);
  if (ctx.rank() != root) {
    // The state (momentum buffers) goes where the parameters are: a GPU, or the host.
    torch::Device device = torch::kCPU;
    for (const auto& group : optimizer.param_groups()) {
      if (!group.params().empty()) {
        device = group.params().front().device();
        break;
      }
    }
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    archive.load_from(in, device);
    optimizer.load(archive);
  }
}

}  // namespace ringfuse_torch
