// Where a rank's TCP mesh listener is: the address it published in the store (full_mesh.cpp,
// `mesh/addr/<rank>` under the mesh's key prefix), for tests that talk to it by hand.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ringfuse::test_support {

/// The port rank `rank` published under `key_prefix`, waiting at most 10 s for it. `Store` is
/// any store client with get(key, timeout).
template <typename Store>
std::uint16_t published_mesh_port(Store& store, const std::string& key_prefix, int rank) {
  const std::string address =
      store.get(key_prefix + "mesh/addr/" + std::to_string(rank), std::chrono::seconds(10));
  return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
}

}  // namespace ringfuse::test_support
