#include "ringfuse_torch/distributed_optimizer.hpp"

#include "ringfuse_torch/tensor_view.hpp"

namespace ringfuse_torch {

DistributedOptimizer::DistributedOptimizer(ringfuse::Context& ctx, torch::optim::Optimizer& inner,
                                           torch::nn::Module& module,
                                           ringfuse::Compression compression)
    : context_(ctx), engine_(ctx.engine()), inner_(inner) {
  options_.op = ringfuse::ReduceOp::avg;
  options_.compression = compression;
  const auto named = module.named_parameters(/*recurse=*/true);
  slots_.reserve(named.size());
  for (const auto& item : named) {
    if (!item.value().requires_grad()) continue;
    slots_.push_back(Slot{"grad." + item.key(), item.value(), {}, {}, false});
  }
  // The vector no longer grows, so hooks may hold a pointer to their slot.
  for (auto& slot : slots_) {
    Slot* target = &slot;
    hooks_.push_back(slot.parameter.register_hook([this, target](torch::Tensor gradient) {
      enqueue(*target, gradient);
      return gradient;  // autograd accumulates the local gradient as usual
    }));
  }
}

DistributedOptimizer::~DistributedOptimizer() {
  for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].parameter.remove_hook(hooks_[i]);
  // A reduction still in flight writes into `reduced`: let it finish before the memory goes.
  for (auto& slot : slots_) {
    if (slot.pending) {
      try {
        slot.work.wait();
      } catch (const ringfuse::Error&) {
        // Already reported to whoever called step(); nothing more to do while destroying.
      }
    }
  }
}

void DistributedOptimizer::enqueue(Slot& slot, const torch::Tensor& gradient) {
  if (slot.pending) {
    throw ringfuse::Error(ringfuse::ErrorKind::invalid_argument,
                          "gradient " + slot.name +
                              " was produced twice before step(); call step() (or "
                              "synchronize()) once per backward pass");
  }
  // A copy, because autograd may keep accumulating into (or reuse) the tensor it hands us.
  torch::NoGradGuard no_grad;
  if (!slot.reduced.defined() || !slot.reduced.sizes().equals(gradient.sizes()) ||
      slot.reduced.scalar_type() != gradient.scalar_type()) {
    slot.reduced = torch::empty_like(gradient, torch::MemoryFormat::Contiguous);
  }
  slot.reduced.copy_(gradient);
  slot.work = engine_.allreduce(slot.name, view_of(slot.reduced), options_);
  slot.pending = true;
}

void DistributedOptimizer::zero_grad() { inner_.zero_grad(); }

void DistributedOptimizer::synchronize() {
  // Parameters that took no part in this backward still join the collective (as zeros), in
  // the same order on every rank, all in one negotiation round (hold() until flush()).
  engine_.hold();
  for (auto& slot : slots_) {
    if (!slot.pending) enqueue(slot, torch::zeros_like(slot.parameter));
  }
  engine_.flush();
  const auto started = std::chrono::steady_clock::now();
  for (auto& slot : slots_) {
    slot.work.wait();
    slot.pending = false;
    torch::NoGradGuard no_grad;
    if (slot.parameter.grad().defined()) {
      slot.parameter.mutable_grad().copy_(slot.reduced);
    } else {
      slot.parameter.mutable_grad() = slot.reduced.clone();
    }
  }
  communication_wait_ += std::chrono::steady_clock::now() - started;
}

void DistributedOptimizer::step() {
  synchronize();
  inner_.step();
  context_.report_step(++steps_);  // ringfuse-run's /metrics shows it as ringfuse_step
}

}  // namespace ringfuse_torch
