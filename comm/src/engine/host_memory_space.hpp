// Host memory as the engine's packing space: the pre-faulted FusionBuffer, a scratch vector,
// and convert_scaled(); everything is synchronous, so begin() and finish() have nothing to do.
#pragma once

#include <vector>

#include "backend/memory_space.hpp"
#include "engine/fusion_buffer.hpp"

namespace ringfuse::engine {

class HostMemorySpace final : public backend::MemorySpace {
 public:
  explicit HostMemorySpace(std::size_t fusion_capacity) : fusion_(fusion_capacity) {}

  Device device() const override { return Device::cpu; }
  int device_index() const override { return 0; }
  std::byte* fusion_buffer(std::size_t bytes) override { return fusion_.data(bytes); }
  std::byte* scratch(std::size_t bytes) override;
  void begin() override {}
  void convert(std::span<const backend::CopySegment> segments, DataType dst_type,
               DataType src_type, double factor) override;
  void fill(void* dst, std::uint64_t pattern, std::size_t element_bytes,
            std::size_t count) override;
  void finish() override {}

 private:
  FusionBuffer fusion_;
  std::vector<std::byte> scratch_;
};

}  // namespace ringfuse::engine
