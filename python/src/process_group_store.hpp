// The c10d Store that torch.distributed hands a process group, seen as a Ringfuse rendezvous
// Store, so that a Context bootstraps over torch's rendezvous (env://, tcp://, file://) instead
// of needing ringfuse-run's store.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "rendezvous/store.hpp"

namespace ringfuse::python {

class C10dStore final : public rendezvous::Store {
 public:
  /// `rank` only labels errors.
  C10dStore(c10::intrusive_ptr<::c10d::Store> store, int rank)
      : store_(std::move(store)), rank_(rank) {}

  void set(const std::string& key, std::string_view value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;

 private:
  c10::intrusive_ptr<::c10d::Store> store_;
  int rank_;
};

}  // namespace ringfuse::python
