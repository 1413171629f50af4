#include "store_address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <optional>

#include <fmt/format.h>

#include "dns_resolver.hpp"
#include "host_list.hpp"
#include "ringfuse/error.hpp"
#include "unique_fd.hpp"

namespace ringfuse::launcher {
namespace {

bool is_loopback(const in_addr& address) { return (ntohl(address.s_addr) >> 24) == 127; }

std::optional<in_addr> parse_ipv4(const std::string& text) {
  in_addr address{};
  if (::inet_pton(AF_INET, text.c_str(), &address) != 1) return std::nullopt;
  return address;
}

// The local address the kernel would send from to reach `destination`: connect() on a UDP
// socket picks the route and source address without sending anything.
std::optional<in_addr> source_address_towards(const in_addr& destination) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::nullopt;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr = destination;
  to.sin_port = htons(9);  // discard; nothing is sent
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0) return std::nullopt;
  sockaddr_in from{};
  socklen_t length = sizeof(from);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&from), &length) != 0) {
    return std::nullopt;
  }
  return from.sin_addr;
}

std::string to_text(const in_addr& address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address, text, sizeof(text));
  return text;
}

std::string this_hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

// The IPv4 address this host's name resolves to here (through /etc/hosts first, as the
// ranks' resolver would), or nullopt.
std::optional<in_addr> resolve_own_name(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* found = nullptr;
  if (::getaddrinfo(name.c_str(), nullptr, &hints, &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  const in_addr address = reinterpret_cast<const sockaddr_in*>(found->ai_addr)->sin_addr;
  ::freeaddrinfo(found);
  return address;
}

}  // namespace

std::string store_address_for(const std::string& host, const std::string& store_addr,
                              std::chrono::milliseconds lookup_timeout) {
  if (!store_addr.empty()) return store_addr;
  if (is_local_host(host) || is_loopback_literal(host)) return "127.0.0.1";

  std::optional<in_addr> destination = parse_ipv4(host);
  std::string how = "";
  if (!destination) {
    DnsResolver resolver(std::nullopt, lookup_timeout);
    const DnsAnswer answer = resolver.lookup_a(host);
    if (answer.status == DnsAnswer::Status::ok && !answer.addresses.empty()) {
      destination = parse_ipv4(answer.addresses.front());
    } else {
      how = fmt::format("'{}' does not resolve here ({})", host, answer.describe());
    }
  }
  if (destination) {
    if (const auto source = source_address_towards(*destination)) {
      if (!is_loopback(*source)) return to_text(*source);
      how = fmt::format("'{}' is {}, an address of this host", host, to_text(*destination));
    } else {
      how = fmt::format("no route from this host to '{}' ({})", host, to_text(*destination));
    }
  }
  // No route to go by: this host's name is the last resort, unless it names loopback.
  const std::string own_name = this_hostname();
  const auto own = resolve_own_name(own_name);
  if (own && !is_loopback(*own)) return to_text(*own);
  throw Error(ErrorKind::invalid_argument,
              fmt::format("cannot tell which address of this host the ranks on '{}' can reach "
                          "the rendezvous store at: {}, and this host's name '{}' {}; give "
                          "--store-addr ADDR with an address of this host that '{}' reaches",
                          host, how, own_name,
                          own ? fmt::format("resolves to the loopback address {}", to_text(*own))
                              : std::string("does not resolve"),
                          host));
}

}  // namespace ringfuse::launcher
