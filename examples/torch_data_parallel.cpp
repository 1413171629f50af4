// Data-parallel training with libtorch in a few lines: wrap the optimizer, start every replica
// from rank 0's weights, give each rank its own samples. Run: ringfuse-run -np 2 ./torch_data_parallel
#include <cstdio>

#include <ringfuse/ringfuse.hpp>
#include <ringfuse_torch/broadcast.hpp>
#include <ringfuse_torch/distributed_optimizer.hpp>

int main() {
  auto ctx = ringfuse::init();
  const int rank = ctx->rank();
  torch::set_num_threads(1);

  // The task: recover a hidden linear map from noisy samples.
  torch::manual_seed(7);
  const auto truth = torch::randn({16, 4});
  torch::manual_seed(100 + rank);  // every rank draws different samples
  const auto x = torch::randn({512, 16});
  const auto y = x.matmul(truth) + 0.01 * torch::randn({512, 4});

  torch::nn::Sequential model(torch::nn::Linear(16, 32), torch::nn::ReLU(),
                              torch::nn::Linear(32, 4));
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-2));
  ringfuse_torch::broadcast_parameters(*ctx, *model);       // identical starting weights
  ringfuse_torch::broadcast_optimizer_state(*ctx, adam);    // and optimizer state
  ringfuse_torch::DistributedOptimizer optimizer(*ctx, adam, *model);  // averages gradients

  for (int step = 0; step < 200; ++step) {
    const auto batch = torch::randint(0, 512, {32}, torch::kInt64);
    optimizer.zero_grad();
    auto loss = torch::mse_loss(model->forward(x.index_select(0, batch)), y.index_select(0, batch));
    loss.backward();   // each gradient's all-reduce starts as soon as backward produces it
    optimizer.step();  // waits for the averaged gradients, then steps Adam
    if (rank == 0 && step % 50 == 0) std::printf("step %d: loss %.4f\n", step, loss.item<double>());
  }

  // Every replica must hold the same weights: compare a checksum's min and max over ranks.
  double sum = 0;
  for (const auto& p : model->parameters()) sum += p.sum().item<double>();
  double low = sum, high = sum;
  ctx->allreduce(&low, 1, ringfuse::DataType::f64, ringfuse::ReduceOp::min);
  ctx->allreduce(&high, 1, ringfuse::DataType::f64, ringfuse::ReduceOp::max);
  const bool agree = low == high;
  std::printf("rank %d: weights checksum %.6f; replicas agree: %s\n", rank, sum, agree ? "yes" : "NO");
  return agree ? 0 : 1;
}
