// Host memory as the engine's packing space: the fusion buffer, a scratch vector, and
// convert_scaled(); everything is synchronous, so begin() and finish() have nothing to do.
// The fusion buffer is the data channel's shared window when it has one (every rank on one
// host), so the all-reduce reads the peers' packed buffers where they are; otherwise the
// pre-faulted private FusionBuffer.
#pragma once

#include <vector>

#include "memory/memory_space.hpp"
#include "memory/fusion_buffer.hpp"
#include "transport/shared_window.hpp"

namespace ringfuse::memory {

class HostMemorySpace final : public MemorySpace {
 public:
  /// `shared` (may be null) must outlive this space.
  HostMemorySpace(std::size_t fusion_capacity, transport::SharedWindow* shared)
      : fusion_(fusion_capacity), shared_(shared) {}

  Device device() const override { return Device::cpu; }
  int device_index() const override { return 0; }
  std::byte* fusion_buffer(std::size_t bytes) override;
  std::byte* scratch(std::size_t bytes) override;
  void begin() override {}
  void convert(std::span<const CopySegment> segments, DataType dst_type,
               DataType src_type, double factor) override;
  void fill(void* dst, std::uint64_t pattern, std::size_t element_bytes,
            std::size_t count) override;
  void finish() override {}

 private:
  FusionBuffer fusion_;
  transport::SharedWindow* shared_;
  std::vector<std::byte> scratch_;
};

}  // namespace ringfuse::memory
