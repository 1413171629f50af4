// Fuzz target: the launcher's hostfile parser (--hostfile), then rank placement on its hosts.
// Anything but ringfuse::Error escaping (std::out_of_range, a crash, a sanitizer report) is a
// finding.
#include <cstddef>
#include <cstdint>

#include "common.hpp"
#include "hostfile.hpp"
#include "ringfuse/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = ringfuse::fuzz::as_text(data, size);
  try {
    const auto hosts = ringfuse::launcher::parse_hostfile(text, "fuzz-hostfile");
    for (int np : {0, 1, 7}) {
      try {
        (void)ringfuse::launcher::place_ranks(hosts, np);
      } catch (const ringfuse::Error&) {
      }
    }
    for (const auto& h : hosts) {
      (void)ringfuse::launcher::is_ip_literal(h.host);
      (void)ringfuse::launcher::is_loopback_literal(h.host);
    }
  } catch (const ringfuse::Error&) {
    // Rejected with a message: the expected outcome for most inputs.
  }
  return 0;
}
