// The gradient lists `ringfuse-perf fusion` replays: torchvision's resnet50 (its 161 parameter
// tensors, in registration order, with their exact shapes), Hugging Face's bert-base (199),
// synthetic models of many equal tensors (small1000 = uniform:1000x4K, uniform:COUNTxBYTES), and
// a single scalar (the per-cycle cost of the engine's negotiation).
#pragma once

#include <cstdint>
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
  std::string name;  // "resnet50" | "bert-base" | "small1000" | "uniform:..." | "scalar"
  std::vector<GradientSpec> gradients;  // in parameter (forward) order
  std::uint64_t total_numel = 0;
};

/// The model called `name`: resnet50, bert-base, small1000, uniform:COUNTxBYTES or scalar;
/// throws ringfuse::Error (invalid_argument) saying what is accepted for anything else.
Model make_model(std::string_view name);

}  // namespace ringfuse::perf
