#include "engine/response_cache.hpp"

#include <fmt/format.h>

namespace ringfuse::engine {

std::optional<std::uint32_t> ResponseCache::find(const Fingerprint& fp) const {
  if (capacity_ == 0 || !fp.cacheable()) return std::nullopt;
  const auto it = index_.find(fp);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

const Fingerprint& ResponseCache::at(std::uint32_t index) const {
  if (index >= slots_.size() || !slots_[index].used) {
    throw Error(ErrorKind::protocol,
                fmt::format("ringfuse engine: response cache index {} is empty; the ranks' "
                            "caches diverged",
                            index));
  }
  return slots_[index].fp;
}

void ResponseCache::touch(std::uint32_t index) {
  if (index < slots_.size()) slots_[index].last_use = ++clock_;
}

std::optional<std::uint32_t> ResponseCache::insert(const Fingerprint& fp) {
  if (capacity_ == 0 || !fp.cacheable()) return std::nullopt;
  if (const auto it = index_.find(fp); it != index_.end()) {
    touch(it->second);
    return it->second;
  }
  std::uint32_t slot = 0;
  if (slots_.size() < capacity_) {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  } else {
    for (std::uint32_t i = 1; i < slots_.size(); ++i) {
      if (slots_[i].last_use < slots_[slot].last_use) slot = i;
    }
    index_.erase(slots_[slot].fp);
    ++evictions_;
  }
  slots_[slot] = Slot{fp, ++clock_, true};
  index_.emplace(fp, slot);
  return slot;
}

}  // namespace ringfuse::engine
