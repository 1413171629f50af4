#include "fusion_model.hpp"

#include <array>
#include <initializer_list>
#include <optional>

#include <fmt/format.h>

#include "ringfuse/error.hpp"
#include "size_parse.hpp"

namespace ringfuse::perf {
namespace {

struct ParamEntry {
  const char* name;
  std::array<std::int64_t, 4> shape;  // unused trailing dimensions are 0
};

constexpr std::uint64_t numel(const ParamEntry& p) {
  std::uint64_t n = 1;
  for (const std::int64_t d : p.shape) {
    if (d != 0) n *= static_cast<std::uint64_t>(d);
  }
  return n;
}

// torchvision.models.resnet50().named_parameters(), in order: the stem (conv 7x7, bn), four
// stages of [3, 4, 6, 3] bottlenecks of widths 64/128/256/512 and expansion 4 (conv1 1x1, conv2
// 3x3 with the stride, conv3 1x1, each followed by bn; the first block of each stage has a 1x1
// downsample conv + bn), then fc 2048 -> 1000. Convolutions have no bias.
constexpr ParamEntry kResnet50[] = {
    {"conv1.weight", {64, 3, 7, 7}},
    {"bn1.weight", {64}},
    {"bn1.bias", {64}},
    {"layer1.0.conv1.weight", {64, 64, 1, 1}},
    {"layer1.0.bn1.weight", {64}},
    {"layer1.0.bn1.bias", {64}},
    {"layer1.0.conv2.weight", {64, 64, 3, 3}},
    {"layer1.0.bn2.weight", {64}},
    {"layer1.0.bn2.bias", {64}},
    {"layer1.0.conv3.weight", {256, 64, 1, 1}},
    {"layer1.0.bn3.weight", {256}},
    {"layer1.0.bn3.bias", {256}},
    {"layer1.0.downsample.0.weight", {256, 64, 1, 1}},
    {"layer1.0.downsample.1.weight", {256}},
    {"layer1.0.downsample.1.bias", {256}},
    {"layer1.1.conv1.weight", {64, 256, 1, 1}},
    {"layer1.1.bn1.weight", {64}},
    {"layer1.1.bn1.bias", {64}},
    {"layer1.1.conv2.weight", {64, 64, 3, 3}},
    {"layer1.1.bn2.weight", {64}},
    {"layer1.1.bn2.bias", {64}},
    {"layer1.1.conv3.weight", {256, 64, 1, 1}},
    {"layer1.1.bn3.weight", {256}},
    {"layer1.1.bn3.bias", {256}},
    {"layer1.2.conv1.weight", {64, 256, 1, 1}},
    {"layer1.2.bn1.weight", {64}},
    {"layer1.2.bn1.bias", {64}},
    {"layer1.2.conv2.weight", {64, 64, 3, 3}},
    {"layer1.2.bn2.weight", {64}},
    {"layer1.2.bn2.bias", {64}},
    {"layer1.2.conv3.weight", {256, 64, 1, 1}},
    {"layer1.2.bn3.weight", {256}},
    {"layer1.2.bn3.bias", {256}},
    {"layer2.0.conv1.weight", {128, 256, 1, 1}},
    {"layer2.0.bn1.weight", {128}},
    {"layer2.0.bn1.bias", {128}},
    {"layer2.0.conv2.weight", {128, 128, 3, 3}},
    {"layer2.0.bn2.weight", {128}},
    {"layer2.0.bn2.bias", {128}},
    {"layer2.0.conv3.weight", {512, 128, 1, 1}},
    {"layer2.0.bn3.weight", {512}},
    {"layer2.0.bn3.bias", {512}},
    {"layer2.0.downsample.0.weight", {512, 256, 1, 1}},
    {"layer2.0.downsample.1.weight", {512}},
    {"layer2.0.downsample.1.bias", {512}},
    {"layer2.1.conv1.weight", {128, 512, 1, 1}},
    {"layer2.1.bn1.weight", {128}},
    {"layer2.1.bn1.bias", {128}},
    {"layer2.1.conv2.weight", {128, 128, 3, 3}},
    {"layer2.1.bn2.weight", {128}},
    {"layer2.1.bn2.bias", {128}},
    {"layer2.1.conv3.weight", {512, 128, 1, 1}},
    {"layer2.1.bn3.weight", {512}},
    {"layer2.1.bn3.bias", {512}},
    {"layer2.2.conv1.weight", {128, 512, 1, 1}},
    {"layer2.2.bn1.weight", {128}},
    {"layer2.2.bn1.bias", {128}},
    {"layer2.2.conv2.weight", {128, 128, 3, 3}},
    {"layer2.2.bn2.weight", {128}},
    {"layer2.2.bn2.bias", {128}},
    {"layer2.2.conv3.weight", {512, 128, 1, 1}},
    {"layer2.2.bn3.weight", {512}},
    {"layer2.2.bn3.bias", {512}},
    {"layer2.3.conv1.weight", {128, 512, 1, 1}},
    {"layer2.3.bn1.weight", {128}},
    {"layer2.3.bn1.bias", {128}},
    {"layer2.3.conv2.weight", {128, 128, 3, 3}},
    {"layer2.3.bn2.weight", {128}},
    {"layer2.3.bn2.bias", {128}},
    {"layer2.3.conv3.weight", {512, 128, 1, 1}},
    {"layer2.3.bn3.weight", {512}},
    {"layer2.3.bn3.bias", {512}},
    {"layer3.0.conv1.weight", {256, 512, 1, 1}},
    {"layer3.0.bn1.weight", {256}},
    {"layer3.0.bn1.bias", {256}},
    {"layer3.0.conv2.weight", {256, 256, 3, 3}},
    {"layer3.0.bn2.weight", {256}},
    {"layer3.0.bn2.bias", {256}},
    {"layer3.0.conv3.weight", {1024, 256, 1, 1}},
    {"layer3.0.bn3.weight", {1024}},
    {"layer3.0.bn3.bias", {1024}},
    {"layer3.0.downsample.0.weight", {1024, 512, 1, 1}},
    {"layer3.0.downsample.1.weight", {1024}},
    {"layer3.0.downsample.1.bias", {1024}},
    {"layer3.1.conv1.weight", {256, 1024, 1, 1}},
    {"layer3.1.bn1.weight", {256}},
    {"layer3.1.bn1.bias", {256}},
    {"layer3.1.conv2.weight", {256, 256, 3, 3}},
    {"layer3.1.bn2.weight", {256}},
    {"layer3.1.bn2.bias", {256}},
    {"layer3.1.conv3.weight", {1024, 256, 1, 1}},
    {"layer3.1.bn3.weight", {1024}},
    {"layer3.1.bn3.bias", {1024}},
    {"layer3.2.conv1.weight", {256, 1024, 1, 1}},
    {"layer3.2.bn1.weight", {256}},
    {"layer3.2.bn1.bias", {256}},
    {"layer3.2.conv2.weight", {256, 256, 3, 3}},
    {"layer3.2.bn2.weight", {256}},
    {"layer3.2.bn2.bias", {256}},
    {"layer3.2.conv3.weight", {1024, 256, 1, 1}},
    {"layer3.2.bn3.weight", {1024}},
    {"layer3.2.bn3.bias", {1024}},
    {"layer3.3.conv1.weight", {256, 1024, 1, 1}},
    {"layer3.3.bn1.weight", {256}},
    {"layer3.3.bn1.bias", {256}},
    {"layer3.3.conv2.weight", {256, 256, 3, 3}},
    {"layer3.3.bn2.weight", {256}},
    {"layer3.3.bn2.bias", {256}},
    {"layer3.3.conv3.weight", {1024, 256, 1, 1}},
    {"layer3.3.bn3.weight", {1024}},
    {"layer3.3.bn3.bias", {1024}},
    {"layer3.4.conv1.weight", {256, 1024, 1, 1}},
    {"layer3.4.bn1.weight", {256}},
    {"layer3.4.bn1.bias", {256}},
    {"layer3.4.conv2.weight", {256, 256, 3, 3}},
    {"layer3.4.bn2.weight", {256}},
    {"layer3.4.bn2.bias", {256}},
    {"layer3.4.conv3.weight", {1024, 256, 1, 1}},
    {"layer3.4.bn3.weight", {1024}},
    {"layer3.4.bn3.bias", {1024}},
    {"layer3.5.conv1.weight", {256, 1024, 1, 1}},
    {"layer3.5.bn1.weight", {256}},
    {"layer3.5.bn1.bias", {256}},
    {"layer3.5.conv2.weight", {256, 256, 3, 3}},
    {"layer3.5.bn2.weight", {256}},
    {"layer3.5.bn2.bias", {256}},
    {"layer3.5.conv3.weight", {1024, 256, 1, 1}},
    {"layer3.5.bn3.weight", {1024}},
    {"layer3.5.bn3.bias", {1024}},
    {"layer4.0.conv1.weight", {512, 1024, 1, 1}},
    {"layer4.0.bn1.weight", {512}},
    {"layer4.0.bn1.bias", {512}},
    {"layer4.0.conv2.weight", {512, 512, 3, 3}},
    {"layer4.0.bn2.weight", {512}},
    {"layer4.0.bn2.bias", {512}},
    {"layer4.0.conv3.weight", {2048, 512, 1, 1}},
    {"layer4.0.bn3.weight", {2048}},
    {"layer4.0.bn3.bias", {2048}},
    {"layer4.0.downsample.0.weight", {2048, 1024, 1, 1}},
    {"layer4.0.downsample.1.weight", {2048}},
    {"layer4.0.downsample.1.bias", {2048}},
    {"layer4.1.conv1.weight", {512, 2048, 1, 1}},
    {"layer4.1.bn1.weight", {512}},
    {"layer4.1.bn1.bias", {512}},
    {"layer4.1.conv2.weight", {512, 512, 3, 3}},
    {"layer4.1.bn2.weight", {512}},
    {"layer4.1.bn2.bias", {512}},
    {"layer4.1.conv3.weight", {2048, 512, 1, 1}},
    {"layer4.1.bn3.weight", {2048}},
    {"layer4.1.bn3.bias", {2048}},
    {"layer4.2.conv1.weight", {512, 2048, 1, 1}},
    {"layer4.2.bn1.weight", {512}},
    {"layer4.2.bn1.bias", {512}},
    {"layer4.2.conv2.weight", {512, 512, 3, 3}},
    {"layer4.2.bn2.weight", {512}},
    {"layer4.2.bn2.bias", {512}},
    {"layer4.2.conv3.weight", {2048, 512, 1, 1}},
    {"layer4.2.bn3.weight", {2048}},
    {"layer4.2.bn3.bias", {2048}},
    {"fc.weight", {1000, 2048}},
    {"fc.bias", {1000}},
};

constexpr std::uint64_t resnet50_total() {
  std::uint64_t total = 0;
  for (const ParamEntry& p : kResnet50) total += numel(p);
  return total;
}
static_assert(std::size(kResnet50) == 161, "resnet50 has 161 parameter tensors");
static_assert(resnet50_total() == 25'557'032, "resnet50 has 25,557,032 parameters");

void add(Model& m, std::string name, std::vector<std::int64_t> shape) {
  GradientSpec g;
  g.name = std::move(name);
  g.shape = std::move(shape);
  g.numel = 1;
  for (const std::int64_t d : g.shape) g.numel *= static_cast<std::uint64_t>(d);
  m.total_numel += g.numel;
  m.gradients.push_back(std::move(g));
}

// Hugging Face BertModel (bert-base-uncased) named_parameters(), in order: embeddings (word,
// position, token type, LayerNorm), 12 encoder layers (query, key, value, attention output
// dense, its LayerNorm, intermediate 768 -> 3072, output 3072 -> 768, its LayerNorm; each dense
// with a bias), then the pooler dense: 199 tensors, 109,482,240 parameters.
void add_bert_base(Model& m) {
  constexpr std::int64_t hidden = 768, intermediate = 3072, layers = 12;
  add(m, "embeddings.word_embeddings.weight", {30522, hidden});
  add(m, "embeddings.position_embeddings.weight", {512, hidden});
  add(m, "embeddings.token_type_embeddings.weight", {2, hidden});
  add(m, "embeddings.LayerNorm.weight", {hidden});
  add(m, "embeddings.LayerNorm.bias", {hidden});
  const auto dense = [&](const std::string& prefix, std::int64_t out, std::int64_t in) {
    add(m, prefix + ".weight", {out, in});
    add(m, prefix + ".bias", {out});
  };
  for (std::int64_t i = 0; i < layers; ++i) {
    const std::string layer = fmt::format("encoder.layer.{}", i);
    dense(layer + ".attention.self.query", hidden, hidden);
    dense(layer + ".attention.self.key", hidden, hidden);
    dense(layer + ".attention.self.value", hidden, hidden);
    dense(layer + ".attention.output.dense", hidden, hidden);
    add(m, layer + ".attention.output.LayerNorm.weight", {hidden});
    add(m, layer + ".attention.output.LayerNorm.bias", {hidden});
    dense(layer + ".intermediate.dense", intermediate, hidden);
    dense(layer + ".output.dense", hidden, intermediate);
    add(m, layer + ".output.LayerNorm.weight", {hidden});
    add(m, layer + ".output.LayerNorm.bias", {hidden});
  }
  dense("pooler.dense", hidden, hidden);
}

// "uniform:COUNTxBYTES": COUNT f32 tensors of BYTES each (K/M/G suffixes, a multiple of 4).
std::optional<Model> uniform_model(std::string_view name) {
  constexpr std::string_view prefix = "uniform:";
  if (!name.starts_with(prefix)) return std::nullopt;
  const auto spec = name.substr(prefix.size());
  const auto x = spec.find('x');
  const auto count = x == std::string_view::npos ? std::nullopt : parse_size(spec.substr(0, x));
  const auto bytes = x == std::string_view::npos ? std::nullopt : parse_size(spec.substr(x + 1));
  if (!count || !bytes || *count == 0 || *count > 1'000'000 || *bytes == 0 || *bytes % 4 != 0 ||
      *bytes > (std::uint64_t{4} << 30) || *count * *bytes > (std::uint64_t{4} << 30)) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("model '{}': expected uniform:COUNTxBYTES with 1..1000000 tensors of "
                            "a positive multiple of 4 bytes (K/M/G suffixes), 4 GiB in all at "
                            "most, e.g. uniform:1000x4K",
                            name));
  }
  Model m;
  m.name = std::string(name);
  for (std::uint64_t i = 0; i < *count; ++i) {
    add(m, fmt::format("uniform.{}", i), {static_cast<std::int64_t>(*bytes / 4)});
  }
  return m;
}

}  // namespace

Model make_model(std::string_view name) {
  Model m;
  m.name = std::string(name);
  if (name == "resnet50") {
    for (const ParamEntry& p : kResnet50) {
      std::vector<std::int64_t> shape;
      for (const std::int64_t d : p.shape) {
        if (d != 0) shape.push_back(d);
      }
      add(m, p.name, std::move(shape));
    }
  } else if (name == "bert-base") {
    add_bert_base(m);
  } else if (name == "small1000") {
    // 1,000 tensors of 4 KiB (1,024 f32 each).
    for (int i = 0; i < 1000; ++i) add(m, fmt::format("small.{}", i), {1024});
  } else if (name == "scalar") {
    add(m, "scalar", {1});
  } else if (auto uniform = uniform_model(name)) {
    return std::move(*uniform);
  } else {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("unknown model '{}': expected resnet50, bert-base, small1000 or "
                            "uniform:COUNTxBYTES",
                            name));
  }
  return m;
}

}  // namespace ringfuse::perf
