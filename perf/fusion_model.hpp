// The gradient lists `ringfuse-perf fusion` replays: torchvision's resnet50 (its 161 parameter
// tensors, in registration order, with their exact shapes), a synthetic model of many small
// tensors, and a single scalar (the per-cycle cost of the engine's negotiation).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ringfuse::perf {

struct GradientSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::uint64_t numel = 0;
};

struct Model {
  std::string name;  // "resnet50" | "small1000" | "scalar"
  std::vector<GradientSpec> gradients;  // in parameter (forward) order
  std::uint64_t total_numel = 0;
};

/// The models `--model` accepts.
std::span<const std::string_view> model_names();

/// The model called `name` (one of model_names() or "scalar"); throws on an unknown name.
Model make_model(std::string_view name);

}  // namespace ringfuse::perf
