#include "algo/workspace.hpp"

#include <algorithm>

namespace ringfuse::algo {

std::byte* Workspace::get(Slot slot, std::size_t bytes) {
  Buffer& buffer = buffers_[slot];
  if (bytes > buffer.capacity) {
    // Grow geometrically so a sweep of rising sizes reallocates only a few times.
    const std::size_t capacity = std::max(bytes, buffer.capacity * 2);
    buffer.data = std::make_unique<std::byte[]>(capacity);  // value-initialised: pre-faulted
    buffer.capacity = capacity;
  }
  return buffer.data.get();
}

}  // namespace ringfuse::algo
