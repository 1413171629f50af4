// Scratch memory for algorithms, kept between collectives: the first touch of fresh pages is
// slow (~0.4 GB/s measured here), so buffers grow rarely, are zero-filled (pre-faulted) when
// they grow, and are never freed on the hot path.
#pragma once

#include <array>
#include <cstddef>
#include <memory>

namespace ringfuse::algo {

class Workspace {
 public:
  enum Slot : std::size_t { kReceive = 0, kWork = 1, kSlotCount = 2 };

  /// At least `bytes` of scratch for `slot`; contents are unspecified. The pointer stays valid
  /// until the next call for the same slot.
  std::byte* get(Slot slot, std::size_t bytes);

 private:
  struct Buffer {
    std::unique_ptr<std::byte[]> data;
    std::size_t capacity = 0;
  };
  std::array<Buffer, kSlotCount> buffers_;
};

}  // namespace ringfuse::algo
