#include "models.hpp"

#include <stdexcept>

namespace ringfuse_train {
namespace {

struct MlpImpl : torch::nn::Module {
  MlpImpl(int inputs, int classes)
      : hidden(register_module("hidden", torch::nn::Linear(inputs, 256))),
        output(register_module("output", torch::nn::Linear(256, classes))) {}

  torch::Tensor forward(const torch::Tensor& images) {
    return output(torch::relu(hidden(images.flatten(1))));
  }

  torch::nn::Linear hidden;
  torch::nn::Linear output;
};

struct CnnImpl : torch::nn::Module {
  CnnImpl(int side, int classes)
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        hidden(register_module("hidden", torch::nn::Linear(32 * (side / 4) * (side / 4), 128))),
        output(register_module("output", torch::nn::Linear(128, classes))) {}

  torch::Tensor forward(const torch::Tensor& images) {
    auto x = torch::max_pool2d(torch::relu(conv1(images)), 2);
    x = torch::max_pool2d(torch::relu(conv2(x)), 2);
    return output(torch::relu(hidden(x.flatten(1))));
  }

  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Linear hidden;
  torch::nn::Linear output;
};

}  // namespace

std::shared_ptr<torch::nn::Module> make_model(const std::string& name, int side, int classes) {
  if (name == "mlp") return std::make_shared<MlpImpl>(side * side, classes);
  if (name == "cnn") return std::make_shared<CnnImpl>(side, classes);
  throw std::invalid_argument("unknown model '" + name + "': expected mlp or cnn");
}

torch::Tensor forward(torch::nn::Module& model, const torch::Tensor& images) {
  if (auto* mlp = dynamic_cast<MlpImpl*>(&model)) return mlp->forward(images);
  if (auto* cnn = dynamic_cast<CnnImpl*>(&model)) return cnn->forward(images);
  throw std::invalid_argument("forward: not a model made by make_model");
}

}  // namespace ringfuse_train
