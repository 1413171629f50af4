// A Store held in this process's memory (Gloo's and c10d's HashStore): for ranks that run as
// threads of one process, as the in-process tests do. Same semantics and error texts as the TCP
// store's client, so code that rendezvouses over it behaves as it would over the network.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rendezvous/store.hpp"

namespace ringfuse::rendezvous {

class MemoryStore final : public Store {
 public:
  /// `name` stands where the TCP store's errors give the server's address.
  explicit MemoryStore(std::string name = "in-memory");

  /// Refuses (invalid_argument) a key and value the TCP store could not carry in one frame.
  void set(const std::string& key, std::string_view value) override;
  std::string get(const std::string& key, std::chrono::milliseconds timeout) override;
  void wait(const std::vector<std::string>& keys, std::chrono::milliseconds timeout) override;
  /// Throws Error(invalid_argument) when the value is not a decimal integer or the sum
  /// overflows 64 bits, leaving the value as it was.
  std::int64_t add(const std::string& key, std::int64_t delta) override;
  bool remove(const std::string& key) override;
  bool check(const std::vector<std::string>& keys) override;

 private:
  /// Waits (lock held) until every key exists or `timeout` passes; throws the timeout error
  /// naming the keys still missing.
  void wait_locked(std::unique_lock<std::mutex>& lock, const std::vector<std::string>& keys,
                   std::chrono::milliseconds timeout);
  bool has_all(const std::vector<std::string>& keys) const;

  std::string name_;
  std::mutex mutex_;
  std::condition_variable changed_;  // a key appeared
  std::unordered_map<std::string, std::string> data_;
};

}  // namespace ringfuse::rendezvous
