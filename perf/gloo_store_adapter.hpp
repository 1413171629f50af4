// gloo::rendezvous::Store over our own TCP store client, so Gloo rendezvous through the same
// store server the Context uses (ringfuse-run's, or rank 0's under mpirun) and no file system or
// Redis is needed. Keys are prefixed per job so they never meet the library's own keys.
#pragma once

#ifdef RINGFUSE_PERF_HAVE_GLOO

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "rendezvous/tcp_store.hpp"

namespace ringfuse::perf {

class GlooStoreAdapter final : public gloo::rendezvous::Store {
 public:
  GlooStoreAdapter(const std::string& host, std::uint16_t port, std::string prefix,
                   std::chrono::milliseconds timeout, const std::string& secret);

  void set(const std::string& key, const std::vector<char>& data) override;
  /// Gloo expects get() to block until the key exists (as its FileStore and HashStore do).
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

  /// The local address of our connection to the store: what Gloo's TCP device should bind.
  std::string local_address() const { return client_.local_address(); }

 private:
  ringfuse::rendezvous::TcpStoreClient client_;
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

}  // namespace ringfuse::perf

#endif
