#include "host_list.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <string>
#include <numeric>

#include "core/host_address.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r");
  return s.substr(first, last - first + 1);
}

int parse_slots(std::string_view text, std::string_view entry) {
  int slots = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), slots);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || slots < 1) {
    throw Error(ErrorKind::invalid_argument,
                "-H entry '" + std::string(entry) + "': slots must be a whole number >= 1, not '" +
                    std::string(text) + "' (write host or host:slots)");
  }
  return slots;
}

}  // namespace

void add_host(std::vector<HostSlots>& hosts, HostSlots entry) {
  auto same = std::find_if(hosts.begin(), hosts.end(),
                           [&](const HostSlots& h) { return h.host == entry.host; });
  if (same != hosts.end()) {
    // "a:2147483647,a:1" must be an error, not a signed overflow (found by tests/fuzz).
    if (__builtin_add_overflow(same->slots, entry.slots, &same->slots)) {
      throw Error(ErrorKind::invalid_argument,
                  "host '" + entry.host + "' is given more than " +
                      std::to_string(std::numeric_limits<int>::max()) + " slots in all");
    }
  } else {
    hosts.push_back(std::move(entry));
  }
}

std::vector<HostSlots> parse_host_list(std::string_view text) {
  std::vector<HostSlots> hosts;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto raw = text.substr(start, comma == std::string_view::npos ? text.npos : comma - start);
    const auto entry = trim(raw);
    if (entry.empty()) {
      throw Error(ErrorKind::invalid_argument,
                  "-H '" + std::string(text) + "' has an empty entry; write host1:slots,host2:slots");
    }
    // An IPv6 literal has colons of its own: write it in brackets, "[::1]:2".
    std::string_view host = entry;
    int slots = 1;
    if (entry.front() == '[') {
      const auto close = entry.find(']');
      if (close == std::string_view::npos) {
        throw Error(ErrorKind::invalid_argument,
                    "-H entry '" + std::string(entry) + "' has '[' without ']'");
      }
      host = entry.substr(1, close - 1);
      const auto rest = entry.substr(close + 1);
      if (!rest.empty()) {
        if (rest.front() != ':') {
          throw Error(ErrorKind::invalid_argument,
                      "-H entry '" + std::string(entry) + "': expected ':slots' after ']'");
        }
        slots = parse_slots(rest.substr(1), entry);
      }
    } else if (const auto colon = entry.rfind(':'); colon != std::string_view::npos) {
      host = entry.substr(0, colon);
      slots = parse_slots(entry.substr(colon + 1), entry);
    }
    if (host.empty()) {
      throw Error(ErrorKind::invalid_argument,
                  "-H entry '" + std::string(entry) + "' has no host name");
    }
    add_host(hosts, HostSlots{std::string(host), slots});
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return hosts;
}

std::vector<Placement> place_ranks(const std::vector<HostSlots>& hosts, int np) {
  const long total = std::accumulate(hosts.begin(), hosts.end(), 0L,
                                     [](long sum, const HostSlots& h) { return sum + h.slots; });
  if (hosts.empty()) {
    throw Error(ErrorKind::invalid_argument, "no hosts given");
  }
  if (np == 0) np = static_cast<int>(total);
  if (np > total) {
    throw Error(ErrorKind::invalid_argument,
                "-np " + std::to_string(np) + " needs more slots than the " +
                    std::to_string(total) + " the hosts offer; add slots (host:slots) or lower -np");
  }
  std::vector<Placement> placements;
  int next = 0;
  for (const auto& h : hosts) {
    if (next == np) break;
    const int take = std::min(h.slots, np - next);
    placements.push_back(Placement{h.host, next, take, static_cast<int>(placements.size())});
    next += take;
  }
  return placements;
}

bool is_ip_literal(const std::string& host) {
  unsigned char buffer[16];
  return ::inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

bool is_loopback_literal(const std::string& host) {
  return core::is_loopback_ipv4(host) || host == "::1";
}

bool is_local_host(const std::string& host) {
  if (host == "localhost" || host == "127.0.0.1" || host == "::1") return true;
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0 && host == name) return true;
  return false;
}

}  // namespace ringfuse::launcher
