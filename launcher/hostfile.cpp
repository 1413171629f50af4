#include "hostfile.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {
namespace {

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '\r') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

}  // namespace

std::vector<HostSlots> parse_hostfile(std::string_view text, const std::string& origin) {
  std::vector<HostSlots> hosts;
  int number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto newline = text.find('\n', start);
    auto line = text.substr(start, newline == std::string_view::npos ? text.npos : newline - start);
    start = newline == std::string_view::npos ? text.size() : newline + 1;
    ++number;
    if (const auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    const auto parts = words(line);
    if (parts.empty()) continue;
    const std::string where = origin + ":" + std::to_string(number) + ": ";
    auto fail = [&](const std::string& what) -> void {
      throw Error(ErrorKind::invalid_argument,
                  where + what + " (expected 'host slots=N', 'host:N' or 'host')");
    };
    auto parse_count = [&](std::string_view value) {
      int n = 0;
      const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || error != std::errc() || end != value.data() + value.size() || n < 1) {
        std::string message = "'";
        message.append(value).append("' is not a whole number of slots >= 1");
        fail(message);
      }
      return n;
    };
    std::string_view host = parts[0];
    int slots = 1;
    bool have_slots = false;
    if (const auto colon = host.rfind(':');
        colon != std::string_view::npos && host.find(':') == colon) {  // not an IPv6 literal
      slots = parse_count(host.substr(colon + 1));
      host = host.substr(0, colon);
      have_slots = true;
    }
    if (host.empty()) fail("no host name");
    for (std::size_t k = 1; k < parts.size(); ++k) {
      const auto part = parts[k];
      const auto eq = part.find('=');
      const auto key = part.substr(0, eq);
      if (eq == std::string_view::npos) fail("unexpected '" + std::string(part) + "'");
      if (key == "slots") {
        if (have_slots) fail("slots given twice");
        slots = parse_count(part.substr(eq + 1));
        have_slots = true;
      } else if (key == "max_slots" || key == "max-slots") {
        // Open MPI's upper bound for oversubscription; we never oversubscribe, so it is ignored.
      } else {
        fail("unknown attribute '" + std::string(key) + "'");
      }
    }
    add_host(hosts, HostSlots{std::string(host), slots});
  }
  if (hosts.empty()) {
    throw Error(ErrorKind::invalid_argument, origin + ": the hostfile names no hosts");
  }
  return hosts;
}

std::vector<HostSlots> read_hostfile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw Error(ErrorKind::invalid_argument,
                "cannot read hostfile '" + path + "': " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_hostfile(text.str(), path);
}

}  // namespace ringfuse::launcher
