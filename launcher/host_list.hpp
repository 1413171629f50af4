// The hosts a job runs on and how its ranks are placed on them: "-H a:2,b:2" or a hostfile
// (hostfile.hpp) give the hosts and their slots; place_ranks fills them in order.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ringfuse::launcher {

struct HostSlots {
  std::string host;
  int slots = 1;
  friend bool operator==(const HostSlots&, const HostSlots&) = default;
};

/// Parses -H's value: comma-separated "host" or "host:slots" (slots >= 1, default 1). A host
/// named twice gets the sum of its slots, as with mpirun. Throws Error(invalid_argument) naming
/// the entry and what is wrong.
std::vector<HostSlots> parse_host_list(std::string_view text);

/// Adds `entry` to `hosts`, merging with an earlier entry for the same host.
void add_host(std::vector<HostSlots>& hosts, HostSlots entry);

/// The ranks one host runs: global ranks first_rank .. first_rank+local_size-1.
struct Placement {
  std::string host;
  int first_rank = 0;
  int local_size = 0;
  int cross_rank = 0;  // index of the host among the hosts that run ranks
};

/// Fills the hosts in order, each up to its slots, until `np` ranks are placed (np 0: every
/// slot). Hosts left without ranks are omitted. Throws Error(invalid_argument) when np exceeds
/// the slots.
std::vector<Placement> place_ranks(const std::vector<HostSlots>& hosts, int np);

/// Whether `host` names this machine (localhost, 127.0.0.1, ::1, or our hostname): such ranks
/// are spawned directly; every other host goes through the rsh agent.
bool is_local_host(const std::string& host);

/// Whether `host` is a literal IPv4 or IPv6 address.
bool is_ip_literal(const std::string& host);

/// Whether `host` is a loopback address literal (127.0.0.0/8, ::1).
bool is_loopback_literal(const std::string& host);

}  // namespace ringfuse::launcher
