// Fuzz target: DNS answers as ringfuse-run --k8s-service handles them.
//
// launcher/dns_resolver.cpp keeps its answer handling in a file-local c-ares callback
// (on_answer), so this harness repeats that callback's steps on the fuzz bytes as the raw DNS
// reply: ares_parse_a_reply into 64 ares_addrttl records, inet_ntop of each, then the
// launcher's own sort_addresses(). Keep it in step with on_answer. c-ares itself is Debian's
// (not instrumented), so coverage feedback comes from our code and the sanitizers watch the
// buffers we hand to c-ares and read back.
#include <arpa/inet.h>
#include <ares.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dns_resolver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 65535) return 0;  // a DNS message over TCP is at most 64 KiB
  // c-ares takes a non-const buffer; give it an exact-size copy so overreads are caught.
  std::vector<unsigned char> buffer(data, data + size);
  ares_addrttl records[64];
  int count = 64;
  const int parsed = ares_parse_a_reply(buffer.empty() ? nullptr : buffer.data(),
                                        static_cast<int>(buffer.size()), nullptr, records, &count);
  if (parsed != ARES_SUCCESS || count == 0) return 0;
  if (count < 0 || count > 64) __builtin_trap();  // c-ares must respect the array we gave it
  std::vector<std::string> addresses;
  for (int i = 0; i < count; ++i) {
    char text[INET_ADDRSTRLEN] = {};
    if (::inet_ntop(AF_INET, &records[i].ipaddr, text, sizeof text) == nullptr) __builtin_trap();
    addresses.emplace_back(text);
  }
  ringfuse::launcher::sort_addresses(addresses);
  for (std::size_t i = 1; i < addresses.size(); ++i) {
    if (addresses[i - 1] == addresses[i]) __builtin_trap();  // sorted *and* unique
  }
  return 0;
}
