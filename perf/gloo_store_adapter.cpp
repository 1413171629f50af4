#ifdef RINGFUSE_PERF_HAVE_GLOO

#include "gloo_store_adapter.hpp"

#include "rendezvous/prefix_store.hpp"

namespace ringfuse::perf {

GlooStoreAdapter::GlooStoreAdapter(const std::string& host, std::uint16_t port, std::string prefix,
                                   std::chrono::milliseconds timeout, const std::string& secret)
    : client_(host, port, timeout, secret), prefix_(std::move(prefix)), timeout_(timeout) {}

void GlooStoreAdapter::set(const std::string& key, const std::vector<char>& data) {
  client_.set(prefix_ + key, std::string_view(data.data(), data.size()));
}

std::vector<char> GlooStoreAdapter::get(const std::string& key) {
  const std::string value = client_.get(prefix_ + key, timeout_);
  return {value.begin(), value.end()};
}

void GlooStoreAdapter::wait(const std::vector<std::string>& keys) {
  client_.wait(rendezvous::prefixed_keys(prefix_, keys), timeout_);
}

void GlooStoreAdapter::wait(const std::vector<std::string>& keys,
                            const std::chrono::milliseconds& timeout) {
  client_.wait(rendezvous::prefixed_keys(prefix_, keys), timeout);
}

}  // namespace ringfuse::perf

#endif
