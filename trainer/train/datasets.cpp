#include "datasets.hpp"

#include <zlib.h>

#include <cstdint>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace ringfuse_train {
namespace {

/// The whole content of a gzip file (zlib reads plain files too).
std::vector<std::uint8_t> read_gzip(const std::string& path) {
  std::unique_ptr<gzFile_s, decltype(&gzclose)> file(gzopen(path.c_str(), "rb"), &gzclose);
  if (!file) {
    throw std::runtime_error(fmt::format(
        "cannot open {}: install the data package (scripts/install-deps.sh does) or pass "
        "--data-dir",
        path));
  }
  std::vector<std::uint8_t> bytes;
  std::vector<std::uint8_t> chunk(1 << 20);
  for (;;) {
    const int n = gzread(file.get(), chunk.data(), static_cast<unsigned>(chunk.size()));
    if (n < 0) throw std::runtime_error(fmt::format("{}: corrupt gzip data", path));
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + n);
  }
  return bytes;
}

std::uint32_t big_endian(const std::vector<std::uint8_t>& bytes, std::size_t at) {
  return (std::uint32_t{bytes[at]} << 24) | (std::uint32_t{bytes[at + 1]} << 16) |
         (std::uint32_t{bytes[at + 2]} << 8) | std::uint32_t{bytes[at + 3]};
}

/// An IDX file (the MNIST format: magic, dimension sizes, then unsigned bytes) as a uint8
/// tensor of its shape.
torch::Tensor read_idx(const std::string& path, std::size_t expected_dims) {
  const auto bytes = read_gzip(path);
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 ||
      bytes[3] != expected_dims) {
    throw std::runtime_error(fmt::format("{}: not an IDX file of {}-d unsigned bytes", path,
                                         expected_dims));
  }
  std::vector<std::int64_t> shape;
  std::size_t total = 1;
  for (std::size_t d = 0; d < expected_dims; ++d) {
    shape.push_back(big_endian(bytes, 4 + 4 * d));
    total *= static_cast<std::size_t>(shape.back());
  }
  const std::size_t offset = 4 + 4 * expected_dims;
  if (bytes.size() != offset + total) {
    throw std::runtime_error(fmt::format("{}: {} bytes of data, expected {}", path,
                                         bytes.size() - offset, total));
  }
  return torch::from_blob(const_cast<std::uint8_t*>(bytes.data()) + offset,
                          shape, torch::kUInt8)
      .clone();
}

Split idx_split(const std::string& dir, const std::string& prefix) {
  auto images = read_idx(dir + "/" + prefix + "-images-idx3-ubyte.gz", 3);
  auto labels = read_idx(dir + "/" + prefix + "-labels-idx1-ubyte.gz", 1);
  // Fashion-MNIST's mean and standard deviation over the training set.
  auto normalised = (images.to(torch::kFloat32).div_(255.0f) - 0.2860f) / 0.3530f;
  return Split{normalised.unsqueeze(1).contiguous(), labels.to(torch::kInt64)};
}

}  // namespace

Dataset load_fashion_mnist(const std::string& dir) {
  return Dataset{"fashion-mnist", idx_split(dir, "train"), idx_split(dir, "t10k"), 10};
}

Dataset load_digits(const std::string& csv_gz) {
  const auto bytes = read_gzip(csv_gz);
  std::istringstream text(std::string(bytes.begin(), bytes.end()));
  std::vector<float> pixels;
  std::vector<std::int64_t> labels;
  std::string line;
  while (std::getline(text, line)) {
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string field;
    std::vector<float> row;
    while (std::getline(fields, field, ',')) row.push_back(std::stof(field));
    if (row.size() != 65) {
      throw std::runtime_error(
          fmt::format("{}: a row has {} fields, expected 64 pixels and a label", csv_gz,
                      row.size()));
    }
    pixels.insert(pixels.end(), row.begin(), row.end() - 1);
    labels.push_back(static_cast<std::int64_t>(row.back()));
  }
  const auto n = static_cast<std::int64_t>(labels.size());
  auto images = torch::from_blob(pixels.data(), {n, 1, 8, 8}, torch::kFloat32).clone() / 16.0f;
  auto targets = torch::from_blob(labels.data(), {n}, torch::kInt64).clone();
  constexpr std::int64_t kTest = 297;
  return Dataset{"digits",
                 Split{images.slice(0, 0, n - kTest).contiguous(),
                       targets.slice(0, 0, n - kTest).contiguous()},
                 Split{images.slice(0, n - kTest).contiguous(), targets.slice(0, n - kTest).contiguous()},
                 10};
}

}  // namespace ringfuse_train
