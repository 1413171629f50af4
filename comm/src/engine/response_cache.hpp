// Horovod's response cache: fingerprints negotiated before get a small index, so a repeating
// set of tensors is negotiated by index (a few bytes per tensor, no fingerprint comparison)
// instead of by full description. Every rank applies the same updates in the same order (the
// coordinator's responses), so the caches stay identical without any extra exchange.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/fingerprint.hpp"

namespace ringfuse::engine {

class ResponseCache {
 public:
  explicit ResponseCache(std::size_t capacity) : capacity_(capacity) {}

  std::optional<std::uint32_t> find(const Fingerprint& fp) const;
  /// Whether `index` holds a fingerprint that matches `fp`, in which case find(fp) would
  /// return `index`: one comparison, for a caller that can guess the index (the same tensors
  /// come in the same order every training step), instead of a hash and a look-up.
  bool holds(std::uint32_t index, const Fingerprint& fp) const {
    return index < slots_.size() && slots_[index].used && slots_[index].fp.matches(fp);
  }
  /// Asks the CPU to start loading the name and shape of the fingerprint at `index` (no-op
  /// for an empty or absent slot), for a caller that will compare it a few steps later.
  void prefetch(std::uint32_t index) const {
    if (index >= slots_.size() || !slots_[index].used) return;
    prefetch_fingerprint(slots_[index].fp);
  }
  /// The fingerprint at `index`; throws Error(protocol) for an empty slot.
  const Fingerprint& at(std::uint32_t index) const;
  void touch(std::uint32_t index);
  /// Inserts (or touches) `fp`, evicting the least recently used entry when full.
  /// Returns its index, or nullopt when the cache is disabled (capacity 0).
  std::optional<std::uint32_t> insert(const Fingerprint& fp);

  std::size_t capacity() const { return capacity_; }
  std::uint64_t evictions() const { return evictions_; }

 private:
  struct Slot {
    Fingerprint fp;
    std::uint64_t last_use = 0;
    bool used = false;
  };
  // Looked up once per announced tensor: hashing the fingerprint in place, not building a key.
  struct Hash {
    std::size_t operator()(const Fingerprint& fp) const { return fp.hash(); }
  };
  struct Same {
    bool operator()(const Fingerprint& a, const Fingerprint& b) const { return a.matches(b); }
  };
  std::size_t capacity_;
  std::vector<Slot> slots_;
  std::unordered_map<Fingerprint, std::uint32_t, Hash, Same> index_;
  std::uint64_t clock_ = 0;
  std::uint64_t evictions_ = 0;
};

}  // namespace ringfuse::engine
