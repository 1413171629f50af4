// One rank of the data-parallel equivalence test: N ranks with per-rank batch B, trained
// through DistributedOptimizer, must end with the same parameters (within 1e-5 relative) as a
// single replica trained here on batch N·B over the same samples in the same order.
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <ringfuse/ringfuse.hpp>

#include "ringfuse_torch/broadcast.hpp"
#include "ringfuse_torch/distributed_optimizer.hpp"

namespace {

struct NetImpl : torch::nn::Module {
  NetImpl()
      : conv(register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3)))),
        hidden(register_module("hidden", torch::nn::Linear(4 * 6 * 6, 32))),
        output(register_module("output", torch::nn::Linear(32, 5))) {}
  torch::Tensor forward(const torch::Tensor& x) {
    return output(torch::tanh(hidden(torch::relu(conv(x)).flatten(1))));
  }
  torch::nn::Conv2d conv;
  torch::nn::Linear hidden;
  torch::nn::Linear output;
};
TORCH_MODULE(Net);

void train_step(Net& net, torch::optim::Optimizer& optimizer, const torch::Tensor& x,
                const torch::Tensor& y) {
  optimizer.zero_grad();
  torch::nn::functional::cross_entropy(net->forward(x), y).backward();
  optimizer.step();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"DistributedOptimizer equivalence check (one rank)"};
  int batch = 8;
  int steps = 6;
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(1);
  auto ctx = ringfuse::init();
  const int rank = ctx->rank();
  const int size = ctx->size();

  // The same data and the same initial weights on every rank (seeded identically); rank 0's
  // weights are broadcast anyway, as a real job does.
  torch::manual_seed(1234);
  const auto images = torch::randn({static_cast<long>(steps) * batch * size, 1, 8, 8});
  const auto labels = torch::randint(0, 5, {images.size(0)}, torch::kInt64);
  Net reference;
  Net replica;
  {
    torch::NoGradGuard no_grad;
    auto source = reference->parameters();
    auto target = replica->parameters();
    for (std::size_t i = 0; i < source.size(); ++i) target[i].copy_(source[i]);
  }
  const auto options = torch::optim::SGDOptions(0.1).momentum(0.9);
  torch::optim::SGD reference_optimizer(reference->parameters(), options);
  torch::optim::SGD replica_optimizer(replica->parameters(), options);
  ringfuse_torch::broadcast_parameters(*ctx, *replica, 0);
  ringfuse_torch::broadcast_optimizer_state(*ctx, replica_optimizer, 0);
  ringfuse_torch::DistributedOptimizer distributed(*ctx, replica_optimizer, *replica);

  for (int step = 0; step < steps; ++step) {
    const long global = static_cast<long>(step) * batch * size;
    // One replica on the whole global batch...
    train_step(reference, reference_optimizer, images.slice(0, global, global + batch * size),
               labels.slice(0, global, global + batch * size));
    // ...against this rank's slice of it, averaged across ranks by the engine.
    const long mine = global + static_cast<long>(rank) * batch;
    distributed.zero_grad();
    torch::nn::functional::cross_entropy(replica->forward(images.slice(0, mine, mine + batch)),
                                         labels.slice(0, mine, mine + batch))
        .backward();
    distributed.step();
  }

  double worst = 0;
  auto expected = reference->named_parameters();
  auto actual = replica->named_parameters();
  for (const auto& item : expected) {
    const auto& got = actual[item.key()];
    const double error =
        ((got - item.value()).abs() / (item.value().abs() + 1e-6)).max().item<double>();
    const double scale = item.value().abs().max().item<double>();
    const double relative = (got - item.value()).abs().max().item<double>() / std::max(scale, 1e-12);
    worst = std::max(worst, relative);
    if (relative > 1e-5) {
      std::printf("rank %d: %s differs: max relative error %.3g (elementwise %.3g)\n", rank,
                  item.key().c_str(), relative, error);
    }
  }
  std::printf("rank %d of %d: %d steps, worst relative parameter difference %.3g: %s\n", rank,
              size, steps, worst, worst <= 1e-5 ? "EQUIVALENT" : "DIFFERENT");
  ctx->barrier();
  return worst <= 1e-5 ? 0 : 1;
}
