// Fuzz target: ringfuse-run's -H value ("host:slots,[v6]:slots,..."), then rank placement.
#include <cstddef>
#include <cstdint>

#include "common.hpp"
#include "host_list.hpp"
#include "ringfuse/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = ringfuse::fuzz::as_text(data, size);
  try {
    const auto hosts = ringfuse::launcher::parse_host_list(text);
    for (int np : {0, 1, 3}) {
      try {
        const auto placements = ringfuse::launcher::place_ranks(hosts, np);
        for (const auto& p : placements) (void)ringfuse::launcher::is_local_host(p.host);
      } catch (const ringfuse::Error&) {
      }
    }
  } catch (const ringfuse::Error&) {
  }
  return 0;
}
