// Fuzz target: the engine's negotiation messages (engine/messages.cpp) as a coordinator or a
// rank decodes them off the control channel. The first byte picks the message (even: a
// rank's CycleMessage, odd: the coordinator's CycleResponse); the rest is its encoding. The
// response cache holds two entries so that cache-index references resolve sometimes. Only
// ringfuse::Error may escape; an accepted message must survive encode -> decode unchanged.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/messages.hpp"
#include "engine/response_cache.hpp"
#include "ringfuse/error.hpp"

namespace {

const ringfuse::engine::ResponseCache& cache() {
  static const ringfuse::engine::ResponseCache instance = [] {
    ringfuse::engine::ResponseCache c(4);
    ringfuse::engine::Fingerprint a;
    a.name = "grad/a";
    a.shape = {1024, 512};
    c.insert(a);
    ringfuse::engine::Fingerprint b;
    b.name = "grad/b";
    b.op_type = ringfuse::engine::OpType::broadcast;
    b.root = 1;
    c.insert(b);
    return c;
  }();
  return instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::vector<std::uint8_t> bytes(data + 1, data + size);
  using namespace ringfuse::engine;
  try {
    if (data[0] % 2 == 0) {
      const auto message = CycleMessage::decode(bytes, cache());
      const auto again = CycleMessage::decode(message.encode(), cache());
      if (again.entries.size() != message.entries.size() || again.indexed != message.indexed ||
          again.first_seq != message.first_seq || again.indices != message.indices) {
        __builtin_trap();
      }
      for (const auto& e : message.entries) (void)e.fp.describe(true);
    } else {
      const auto response = CycleResponse::decode(bytes, cache());
      const auto again = CycleResponse::decode(response.encode(), cache());
      if (again.ready.size() != response.ready.size() || again.message != response.message ||
          again.indexed_released != response.indexed_released) {
        __builtin_trap();
      }
      for (const auto& e : response.ready) (void)e.fp.describe(true);
    }
  } catch (const ringfuse::Error&) {
  }
  return 0;
}
