#include "transport/shared_memory_proof.hpp"

#include <algorithm>
#include <cstring>
#include <random>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "rendezvous/prefix_store.hpp"
#include "transport/group_gather.hpp"
#include "transport/shm_segment.hpp"
#include "transport/unlink_on_signal.hpp"

namespace ringfuse::transport {
namespace {

constexpr std::size_t kProbeBytes = 4096;

std::string random_token() {
  std::random_device entropy;
  return fmt::format("{:08x}{:08x}{:08x}{:08x}", entropy(), entropy(), entropy(), entropy());
}

// '1' for each peer whose published "NAME TOKEN" this rank could open and read back.
std::string try_peers(const std::vector<std::string>& published, int rank, bool own_created,
                      const GlobalRanks& global) {
  std::string seen(published.size(), '0');
  seen[static_cast<std::size_t>(rank)] = own_created ? '1' : '0';
  for (std::size_t peer = 0; peer < published.size(); ++peer) {
    if (static_cast<int>(peer) == rank) continue;
    const std::string& entry = published[peer];
    const auto space = entry.find(' ');
    if (space == std::string::npos) continue;  // the peer could not create its segment
    const std::string name = entry.substr(0, space);
    const std::string token = entry.substr(space + 1);
    try {
      const auto segment = shm::Segment::open(name, kProbeBytes);
      if (std::memcmp(segment.data(), token.data(), token.size()) == 0) seen[peer] = '1';
    } catch (const std::system_error& e) {
      spdlog::debug("rank {}: the shared memory of rank {} is not visible here: {}",
                    global(rank), global(static_cast<int>(peer)), e.what());
    }
  }
  return seen;
}

}  // namespace

std::vector<std::string> prove_shared_memory(rendezvous::Store& store, const MeshOptions& mesh,
                                             int rank, int size) {
  rendezvous::PrefixStore world(store, mesh.key_prefix);
  std::string_view scope = mesh.key_prefix;
  if (scope.starts_with("ringfuse/")) scope.remove_prefix(9);  // segment_name says it
  const std::string name = shm::segment_name(fmt::format("{}probe{}", scope, rank));
  const std::string token = random_token();
  shm::UnlinkOnSignal guard(name);  // before the name exists, as in ShmTransport's set-up
  shm::Segment probe;
  std::string published = "-";
  try {
    probe = shm::Segment::create(name, kProbeBytes);
    std::memcpy(probe.data(), token.data(), token.size());
    published = name + " " + token;
  } catch (const std::system_error& e) {
    spdlog::debug("rank {}: cannot create a shared-memory segment: {}", mesh.global_ranks(rank),
                  e.what());
  }
  constexpr std::string_view kStep = "set-up of shared memory (proving who can share it)";
  const auto segments = all_gather_in_group(world, "shm/probe", published, rank, size,
                                            mesh.connect_timeout, mesh.global_ranks, kStep);
  const std::string opened =
      try_peers(segments, rank, probe.data() != nullptr, mesh.global_ranks);
  const auto seen = all_gather_in_group(world, "shm/seen", opened, rank, size,
                                        mesh.connect_timeout, mesh.global_ranks, kStep);
  probe.unlink();  // every rank has tried every segment
  return seen;
}

namespace {

bool share(const std::vector<std::string>& seen, int a, int b) {
  const auto saw = [&](int from, int of) {
    const auto& row = seen[static_cast<std::size_t>(from)];
    return static_cast<std::size_t>(of) < row.size() && row[static_cast<std::size_t>(of)] == '1';
  };
  return saw(a, b) && saw(b, a) && saw(a, a) && saw(b, b);
}

}  // namespace

std::vector<std::pair<int, int>> pairs_without_shared_memory(
    const std::vector<std::string>& seen) {
  std::vector<std::pair<int, int>> pairs;
  const int size = static_cast<int>(seen.size());
  for (int a = 0; a < size; ++a) {
    for (int b = a + 1; b < size; ++b) {
      if (!share(seen, a, b)) pairs.emplace_back(a, b);
    }
  }
  return pairs;
}

std::vector<std::vector<int>> shared_memory_groups(const std::vector<std::string>& seen) {
  std::vector<std::vector<int>> groups;
  const int size = static_cast<int>(seen.size());
  for (int p = 0; p < size; ++p) {
    const auto joinable = [&](const std::vector<int>& group) {
      return std::all_of(group.begin(), group.end(), [&](int m) { return share(seen, p, m); });
    };
    const auto group = std::find_if(groups.begin(), groups.end(), joinable);
    if (group != groups.end()) {
      group->push_back(p);
    } else {
      groups.push_back({p});
    }
  }
  return groups;
}

}  // namespace ringfuse::transport
