// A Store seen through a key prefix, as c10d's and Gloo's PrefixStore: each world, channel and
// step of a set-up gets its own namespace without building key strings by hand.
#pragma once

#include <string>
#include <vector>

#include "rendezvous/store.hpp"

namespace ringfuse::rendezvous {

/// `prefix + key` for each of `keys`, in order.
std::vector<std::string> prefixed_keys(const std::string& prefix,
                                       const std::vector<std::string>& keys);

class PrefixStore final : public Store {
 public:
  /// Every key is `prefix + key` in `base`, which must outlive this view. Prefixes nest:
  /// PrefixStore(PrefixStore(s, "a/"), "b/") reads and writes "a/b/..." in `s`.
  PrefixStore(Store& base, std::string prefix) : base_(base), prefix_(std::move(prefix)) {}

  const std::string& prefix() const { return prefix_; }

  void set(const std::string& key, std::string_view value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;
  Store& root() override { return base_.root(); }

 private:
  Store& base_;
  std::string prefix_;
};

}  // namespace ringfuse::rendezvous
