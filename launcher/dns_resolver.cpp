#include "dns_resolver.hpp"

#include <arpa/inet.h>
#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <sys/select.h>

#include <algorithm>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

struct DnsResolver::Channel {
  ares_channel channel = nullptr;
};

namespace {

using Clock = std::chrono::steady_clock;

std::uint32_t numeric(const std::string& address) {
  in_addr a{};
  if (::inet_pton(AF_INET, address.c_str(), &a) != 1) return 0xffffffffu;
  return ntohl(a.s_addr);
}

struct QueryState {
  bool done = false;
  DnsAnswer answer;
};

void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* buffer, int length) {
  auto& state = *static_cast<QueryState*>(arg);
  state.done = true;
  if (status == ARES_ENOTFOUND) {
    state.answer.status = DnsAnswer::Status::nxdomain;
    return;
  }
  if (status == ARES_ENODATA) {
    state.answer.status = DnsAnswer::Status::no_data;
    return;
  }
  if (status != ARES_SUCCESS) {
    state.answer.status = DnsAnswer::Status::failed;
    state.answer.detail = ares_strerror(status);
    return;
  }
  ares_addrttl records[64];
  int count = 64;
  const int parsed = ares_parse_a_reply(buffer, length, nullptr, records, &count);
  if (parsed == ARES_ENODATA || (parsed == ARES_SUCCESS && count == 0)) {
    state.answer.status = DnsAnswer::Status::no_data;
    return;
  }
  if (parsed != ARES_SUCCESS) {
    state.answer.status = DnsAnswer::Status::failed;
    state.answer.detail = std::string("unparsable reply: ") + ares_strerror(parsed);
    return;
  }
  for (int i = 0; i < count; ++i) {
    char text[INET_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET, &records[i].ipaddr, text, sizeof text);
    state.answer.addresses.emplace_back(text);
  }
  sort_addresses(state.answer.addresses);
  state.answer.status = DnsAnswer::Status::ok;
}

}  // namespace

void sort_addresses(std::vector<std::string>& addresses) {
  std::sort(addresses.begin(), addresses.end(), [](const std::string& a, const std::string& b) {
    const auto na = numeric(a), nb = numeric(b);
    return na != nb ? na < nb : a < b;
  });
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
}

std::string DnsAnswer::describe() const {
  switch (status) {
    case Status::ok: return std::to_string(addresses.size()) + " A records";
    case Status::nxdomain: return "NXDOMAIN";
    case Status::no_data: return "no A records";
    case Status::failed: return detail.empty() ? "lookup failed" : detail;
  }
  return "?";
}

DnsResolver::DnsResolver(std::optional<std::string> server, std::chrono::milliseconds query_timeout)
    : channel_(new Channel), query_timeout_(query_timeout) {
  if (const int rc = ares_library_init(ARES_LIB_INIT_ALL); rc != ARES_SUCCESS) {
    delete channel_;
    throw Error(ErrorKind::system, std::string("c-ares initialisation failed: ") + ares_strerror(rc));
  }
  ares_options options{};
  options.timeout = static_cast<int>(std::max<long long>(100, query_timeout.count() / 2));
  options.tries = 2;
  // Names are queried fully qualified; never append the pod's search domains.
  options.flags = ARES_FLAG_NOSEARCH;
  const int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
  if (const int rc = ares_init_options(&channel_->channel, &options, mask); rc != ARES_SUCCESS) {
    delete channel_;
    ares_library_cleanup();
    throw Error(ErrorKind::system, std::string("c-ares channel set-up failed: ") + ares_strerror(rc));
  }
  if (server) {
    // c-ares wants "IP:PORT" (or "[v6]:PORT"); a bare IP uses port 53.
    if (const int rc = ares_set_servers_ports_csv(channel_->channel, server->c_str());
        rc != ARES_SUCCESS) {
      ares_destroy(channel_->channel);
      delete channel_;
      ares_library_cleanup();
      throw Error(ErrorKind::invalid_argument, "--dns-server '" + *server +
                                                   "' is not IP:PORT (" + ares_strerror(rc) + ")");
    }
  }
}

DnsResolver::~DnsResolver() {
  ares_destroy(channel_->channel);
  delete channel_;
  ares_library_cleanup();
}

DnsAnswer DnsResolver::lookup_a(const std::string& name) {
  const std::string fqdn = name.ends_with('.') ? name : name + ".";
  QueryState state;
  ares_query(channel_->channel, fqdn.c_str(), ns_c_in, ns_t_a, on_answer, &state);
  const auto deadline = Clock::now() + query_timeout_;
  while (!state.done) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
      ares_cancel(channel_->channel);  // calls on_answer with ARES_ECANCELLED
      state.answer.status = DnsAnswer::Status::failed;
      state.answer.detail = "timeout";
      break;
    }
    fd_set readers, writers;
    FD_ZERO(&readers);
    FD_ZERO(&writers);
    const int nfds = ares_fds(channel_->channel, &readers, &writers);
    timeval cap{};
    const auto left_us = std::chrono::duration_cast<std::chrono::microseconds>(left).count();
    cap.tv_sec = static_cast<time_t>(left_us / 1'000'000);
    cap.tv_usec = static_cast<suseconds_t>(left_us % 1'000'000);
    timeval wait{};
    timeval* tv = ares_timeout(channel_->channel, &cap, &wait);
    ::select(nfds, &readers, &writers, nullptr, tv);
    ares_process(channel_->channel, &readers, &writers);
  }
  if (state.answer.status == DnsAnswer::Status::failed && state.answer.detail.empty()) {
    state.answer.detail = "lookup failed";
  }
  return state.answer;
}

}  // namespace ringfuse::launcher
