// ringfuse-train: data-parallel training of a small model on real data, one process per rank.
//   ringfuse-run -np 4 ringfuse-train --model cnn --dataset fashion-mnist --epochs 2
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <ringfuse/ringfuse.hpp>

#include "checkpoint.hpp"
#include "datasets.hpp"
#include "models.hpp"
#include "ringfuse_torch/broadcast.hpp"
#include "ringfuse_torch/distributed_optimizer.hpp"
#include "sharding.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using ringfuse_train::Dataset;

struct Flags {
  std::string model = "cnn";
  std::string dataset = "fashion-mnist";
  int epochs = 2;
  int batch_size = 64;
  double lr = 0.05;
  double momentum = 0.9;
  std::string checkpoint_dir;
  bool resume = false;
  std::string fashion_dir = "/usr/share/datasets/fashion-mnist";
  std::string digits_csv = "build/data/digits.csv.gz";
  std::uint64_t seed = 42;
  int threads = 0;
  int progress_every = 100;
  std::string device = "auto";
};

/// Where this rank trains: `cuda` is GPU local_rank % visible GPUs (the GPU the library's
/// NCCL backend and engine use for this rank); `auto` is cuda when this libtorch has CUDA and a
/// GPU is visible, else cpu.
torch::Device training_device(const std::string& requested, const ringfuse::Context& ctx) {
  const bool have_cuda = torch::cuda::is_available();
  if (requested == "cpu" || (requested == "auto" && !have_cuda)) return torch::kCPU;
  if (!have_cuda) {
    throw std::runtime_error(
        fmt::format("rank {}: --device cuda, but {}; use --device cpu (or auto)", ctx.rank(),
                    torch::hasCUDA() ? "no CUDA device is visible"
                                     : "this libtorch was built without CUDA"));
  }
  const auto devices = static_cast<int>(torch::cuda::device_count());
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(ctx.local_rank() % devices)};
}

struct Evaluation {
  double accuracy;
  double loss;
};

/// Every rank scores its shard of the test split; the counts are summed across ranks.
Evaluation evaluate(ringfuse::Context& ctx, torch::nn::Module& model, const Dataset& data,
                    torch::Device device) {
  torch::NoGradGuard no_grad;
  model.eval();
  const auto n = data.test.images.size(0);
  // Every test sample exactly once across ranks (no padding, unlike training shards).
  const auto indices = torch::arange(ctx.rank(), n, ctx.size(), torch::kInt64);
  double totals[3] = {0, 0, 0};  // correct, loss sum, samples
  constexpr std::int64_t kBatch = 1000;
  for (std::int64_t start = 0; start < indices.size(0); start += kBatch) {
    auto batch = indices.slice(0, start, std::min(start + kBatch, indices.size(0)));
    auto logits =
        ringfuse_train::forward(model, data.test.images.index_select(0, batch).to(device));
    auto labels = data.test.labels.index_select(0, batch).to(device);
    totals[0] += logits.argmax(1).eq(labels).sum().item<double>();
    totals[1] += torch::nn::functional::cross_entropy(
                     logits, labels,
                     torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                     .item<double>();
    totals[2] += static_cast<double>(batch.size(0));
  }
  ctx.allreduce(totals, 3, ringfuse::DataType::f64, ringfuse::ReduceOp::sum);
  model.train();
  return Evaluation{totals[0] / totals[2], totals[1] / totals[2]};
}

int train(const Flags& flags) {
  auto ctx = ringfuse::init();
  const int rank = ctx->rank();
  const int size = ctx->size();
  const bool lead = rank == 0;
  const int threads =
      flags.threads > 0
          ? flags.threads
          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / ctx->local_size());
  torch::set_num_threads(threads);
  torch::manual_seed(flags.seed + static_cast<std::uint64_t>(rank));  // dropout etc. differ per rank
  const torch::Device device = training_device(flags.device, *ctx);

  const Dataset data = flags.dataset == "digits"
                           ? ringfuse_train::load_digits(flags.digits_csv)
                           : ringfuse_train::load_fashion_mnist(flags.fashion_dir);
  const int side = static_cast<int>(data.train.images.size(2));
  torch::manual_seed(flags.seed);  // the same initial weights everywhere (rank 0's win anyway)
  auto model = ringfuse_train::make_model(flags.model, side, data.classes);
  model->to(device);  // before the optimizer takes the parameters
  torch::optim::SGD optimizer(model->parameters(),
                              torch::optim::SGDOptions(flags.lr).momentum(flags.momentum));

  ringfuse_train::Progress progress;
  if (flags.resume && !flags.checkpoint_dir.empty()) {
    if (auto loaded =
            ringfuse_train::load_checkpoint(flags.checkpoint_dir, *model, optimizer, device)) {
      progress = *loaded;
      if (lead) {
        fmt::print("resumed from {}/checkpoint.pt at epoch {} (last loss {:.4f})\n",
                   flags.checkpoint_dir, progress.next_epoch + 1, progress.last_loss);
      }
    } else if (lead) {
      fmt::print("no checkpoint in {}; starting from scratch\n", flags.checkpoint_dir);
    }
  }
  ringfuse_torch::broadcast_parameters(*ctx, *model, 0);
  ringfuse_torch::broadcast_optimizer_state(*ctx, optimizer, 0);
  ringfuse_torch::DistributedOptimizer distributed(*ctx, optimizer, *model);

  const auto n = data.train.images.size(0);
  if (lead) {
    fmt::print("training {} on {} ({} train / {} test samples) with {} ranks x batch {}, "
               "{} threads per rank, on {}\n",
               flags.model, data.name, n, data.test.images.size(0), size, flags.batch_size,
               threads, device.is_cuda() ? "cuda (GPU local rank % GPUs)" : "cpu");
  }
  std::string checkpoint_path;
  Evaluation evaluation{0, 0};
  for (int epoch = progress.next_epoch; epoch < flags.epochs; ++epoch) {
    const auto indices = ringfuse_train::shard_indices(n, rank, size, flags.seed, epoch);
    const std::int64_t steps = (indices.size(0) + flags.batch_size - 1) / flags.batch_size;
    distributed.reset_timers();
    const auto started = Clock::now();
    double loss_sum = 0;
    for (std::int64_t step = 0; step < steps; ++step) {
      auto batch = indices.slice(0, step * flags.batch_size,
                                 std::min((step + 1) * flags.batch_size, indices.size(0)));
      distributed.zero_grad();
      auto logits = ringfuse_train::forward(
          *model, data.train.images.index_select(0, batch).to(device));
      auto loss = torch::nn::functional::cross_entropy(
          logits, data.train.labels.index_select(0, batch).to(device));
      loss.backward();
      distributed.step();
      loss_sum += loss.item<double>();
      if (lead && flags.progress_every > 0 && (step + 1) % flags.progress_every == 0) {
        const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
        fmt::print("epoch {} step {}/{}: loss {:.4f}, {:.0f} samples/s\n", epoch + 1, step + 1,
                   steps, loss_sum / static_cast<double>(step + 1),
                   static_cast<double>((step + 1) * flags.batch_size * size) / seconds);
        std::fflush(stdout);
      }
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    // The epoch's mean loss over every rank's batches.
    double epoch_loss[2] = {loss_sum, static_cast<double>(steps)};
    ctx->allreduce(epoch_loss, 2, ringfuse::DataType::f64, ringfuse::ReduceOp::sum);
    progress = ringfuse_train::Progress{epoch + 1, epoch_loss[0] / epoch_loss[1]};
    evaluation = evaluate(*ctx, *model, data, device);
    if (lead) {
      fmt::print("epoch {}/{}: loss {:.4f}, test accuracy {:.4f}, test loss {:.4f}, "
                 "{:.0f} samples/s, all-reduce wait {:.1f}% of step time ({:.1f} s)\n",
                 epoch + 1, flags.epochs, progress.last_loss, evaluation.accuracy,
                 evaluation.loss, static_cast<double>(indices.size(0) * size) / seconds,
                 100.0 * distributed.communication_wait().count() / seconds, seconds);
      if (!flags.checkpoint_dir.empty()) {
        checkpoint_path =
            ringfuse_train::save_checkpoint(flags.checkpoint_dir, *model, optimizer, progress);
        fmt::print("checkpoint written to {}\n", checkpoint_path);
      }
      std::fflush(stdout);
    }
  }
  if (lead) {
    fmt::print("final test accuracy {:.4f}\n", evaluation.accuracy);
    if (const char* timeline = std::getenv("RINGFUSE_TIMELINE"); timeline && *timeline) {
      // The engine writes one Chrome-trace file per rank: NAME.json -> NAME.<rank>.json.
      std::string base = timeline;
      if (base.size() > 5 && base.ends_with(".json")) base.resize(base.size() - 5);
      fmt::print("timeline: {}.0.json ... {}.{}.json (Chrome trace; load in Perfetto)\n", base,
                 base, size - 1);
    }
    if (!checkpoint_path.empty()) fmt::print("checkpoint: {}\n", checkpoint_path);
  }
  ctx->barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Data-parallel training with Ringfuse (one process per rank; launch with "
               "ringfuse-run)"};
  Flags flags;
  app.add_option("--model", flags.model, "mlp | cnn")->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  app.add_option("--dataset", flags.dataset, "fashion-mnist | digits")
      ->check(CLI::IsMember({"fashion-mnist", "digits"}))->capture_default_str();
  app.add_option("--epochs", flags.epochs, "epochs to train")->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--batch-size", flags.batch_size, "samples per rank per step")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--lr", flags.lr, "SGD learning rate")->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--momentum", flags.momentum, "SGD momentum")->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--checkpoint-dir", flags.checkpoint_dir,
                 "rank 0 writes checkpoint.pt here after every epoch");
  app.add_flag("--resume", flags.resume, "continue from --checkpoint-dir's checkpoint");
  app.add_option("--fashion-dir", flags.fashion_dir, "Fashion-MNIST IDX files (.gz)")
      ->capture_default_str();
  app.add_option("--digits-csv", flags.digits_csv,
                 "digits.csv.gz (scripts/fetch-digits.sh extracts it)")->capture_default_str();
  app.add_option("--seed", flags.seed, "data order and initial weights")->capture_default_str();
  app.add_option("--threads", flags.threads, "torch threads per rank (0: cores / local ranks)")
      ->capture_default_str();
  app.add_option("--progress-every", flags.progress_every, "steps between progress lines (0: none)")
      ->capture_default_str();
  app.add_option("--device", flags.device,
                 "auto | cpu | cuda (GPU local rank % visible GPUs; auto: cuda when there is one)")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    return train(flags);
  } catch (const ringfuse::Error& e) {
    std::cerr << "ringfuse-train: " << e.what() << std::endl;
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "ringfuse-train: " << e.what() << std::endl;
    return 1;
  }
}
