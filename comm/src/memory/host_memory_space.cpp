#include "memory/host_memory_space.hpp"

#include <cstring>

namespace ringfuse::memory {

std::byte* HostMemorySpace::fusion_buffer(std::size_t bytes) {
  // Every rank takes the same branch: the window exists on all ranks or none, with one
  // capacity, and they all pack the same fused response.
  if (shared_ != nullptr && bytes <= shared_->capacity()) return shared_->reserve(bytes);
  return fusion_.data(bytes);
}

std::byte* HostMemorySpace::scratch(std::size_t bytes) {
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return scratch_.data();
}

void HostMemorySpace::convert(std::span<const CopySegment> segments, DataType dst_type,
                              DataType src_type, double factor) {
  for (const auto& segment : segments) {
    convert_scaled(segment.dst, dst_type, segment.src, src_type, segment.count, factor);
  }
}

void HostMemorySpace::fill(void* dst, std::uint64_t pattern, std::size_t element_bytes,
                           std::size_t count) {
  auto* out = static_cast<std::byte*>(dst);
  for (std::size_t i = 0; i < count; ++i) std::memcpy(out + i * element_bytes, &pattern, element_bytes);
}

}  // namespace ringfuse::memory
