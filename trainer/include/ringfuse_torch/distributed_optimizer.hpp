// Data-parallel training in one wrapper (Horovod's DistributedOptimizer): as backward produces
// each gradient, a hook hands a copy of it to the engine, which fuses the all-reduces and
// overlaps them with the rest of backward; step() waits for the averaged gradients, writes
// them into .grad and runs the wrapped optimizer.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <ringfuse/context.hpp>
#include <ringfuse/engine.hpp>

namespace ringfuse_torch {

class DistributedOptimizer {
 public:
  /// `inner` and `module` must outlive this object. Every rank must build it over the same
  /// module structure, so the gradients' names and order agree.
  DistributedOptimizer(ringfuse::Context& ctx, torch::optim::Optimizer& inner,
                       torch::nn::Module& module,
                       ringfuse::Compression compression = ringfuse::Compression::none);
  ~DistributedOptimizer();
  DistributedOptimizer(const DistributedOptimizer&) = delete;
  DistributedOptimizer& operator=(const DistributedOptimizer&) = delete;

  void zero_grad();
  /// Waits for every gradient's all-reduce (enqueueing those backward did not produce, as
  /// zeros, so every rank runs the same collectives), then steps the wrapped optimizer.
  void step();
  /// Only the waiting part of step(): afterwards .grad holds the average over all ranks.
  void synchronize();

  /// Time step() spent blocked on communication, summed since the last reset.
  std::chrono::duration<double> communication_wait() const { return communication_wait_; }
  void reset_timers() { communication_wait_ = {}; }

 private:
  struct Slot {
    std::string name;
    torch::Tensor parameter;
    torch::Tensor reduced;  // the copy that travels; .grad gets it back after the reduction
    ringfuse::Work work;
    bool pending = false;
  };

  void enqueue(Slot& slot, const torch::Tensor& gradient);

  ringfuse::Context& context_;
  ringfuse::Engine& engine_;
  torch::optim::Optimizer& inner_;
  ringfuse::AllreduceOptions options_;
  std::vector<Slot> slots_;
  std::vector<unsigned> hooks_;
  std::chrono::duration<double> communication_wait_{0};
  std::uint64_t steps_ = 0;  // step() calls so far, reported to the launcher
};

}  // namespace ringfuse_torch
