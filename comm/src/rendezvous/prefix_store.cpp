#include "rendezvous/prefix_store.hpp"

namespace ringfuse::rendezvous {

std::vector<std::string> prefixed_keys(const std::string& prefix,
                                       const std::vector<std::string>& keys) {
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const auto& key : keys) out.push_back(prefix + key);
  return out;
}

void PrefixStore::set(const std::string& key, std::string_view value) {
  base_.set(prefix_ + key, value);
}

std::string PrefixStore::get(const std::string& key, std::chrono::milliseconds timeout) {
  return base_.get(prefix_ + key, timeout);
}

void PrefixStore::wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) {
  base_.wait(prefixed_keys(prefix_, keys), timeout);
}

std::int64_t PrefixStore::add(const std::string& key, std::int64_t delta) {
  return base_.add(prefix_ + key, delta);
}

bool PrefixStore::remove(const std::string& key) { return base_.remove(prefix_ + key); }

bool PrefixStore::check(const std::vector<std::string>& keys) {
  return base_.check(prefixed_keys(prefix_, keys));
}

}  // namespace ringfuse::rendezvous
