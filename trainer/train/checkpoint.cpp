#include "checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>

namespace ringfuse_train {
namespace {

std::string checkpoint_path(const std::string& dir) { return dir + "/checkpoint.pt"; }

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

}  // namespace

std::string save_checkpoint(const std::string& dir, torch::nn::Module& model,
                            torch::optim::Optimizer& optimizer, const Progress& progress) {
  std::filesystem::create_directories(dir);
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive;
  model.save(model_archive);
  archive.write("model", model_archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive.write("optimizer", optimizer_archive);
  archive.write("next_epoch", torch::tensor(static_cast<std::int64_t>(progress.next_epoch)));
  archive.write("last_loss", torch::tensor(progress.last_loss, torch::kFloat64));

  // A reader (or a crash) never sees a half-written checkpoint: write aside, then rename.
  const std::string final_path = checkpoint_path(dir);
  const std::string temporary = final_path + ".tmp";
  archive.save_to(temporary);
  fsync_path(temporary, O_RDONLY);
  std::filesystem::rename(temporary, final_path);
  fsync_path(dir, O_RDONLY | O_DIRECTORY);
  return final_path;
}

std::optional<Progress> load_checkpoint(const std::string& dir, torch::nn::Module& model,
                                        torch::optim::Optimizer& optimizer, torch::Device device) {
  const std::string path = checkpoint_path(dir);
  if (!std::filesystem::exists(path)) return std::nullopt;
  torch::serialize::InputArchive archive;
  archive.load_from(path, device);  // a checkpoint written on a GPU loads on a CPU, and back
  torch::serialize::InputArchive model_archive;
  archive.read("model", model_archive);
  model.load(model_archive);
  torch::serialize::InputArchive optimizer_archive;
  archive.read("optimizer", optimizer_archive);
  optimizer.load(optimizer_archive);
  torch::Tensor next_epoch, last_loss;
  archive.read("next_epoch", next_epoch);
  archive.read("last_loss", last_loss);
  return Progress{static_cast<int>(next_epoch.item<std::int64_t>()), last_loss.item<double>()};
}

}  // namespace ringfuse_train
