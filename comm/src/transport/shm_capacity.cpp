#include "transport/shm_capacity.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "transport/group_gather.hpp"
#include "transport/shm_ring.hpp"

namespace ringfuse::transport {
namespace {

constexpr char kShmPath[] = "/dev/shm";
constexpr std::size_t kMiB = std::size_t{1} << 20;

/// Free bytes of /dev/shm for an unprivileged process; "unknown" (max) when it cannot be read,
/// in which case creating the segments will tell.
std::size_t free_shm_bytes() {
  struct statvfs info {};
  if (::statvfs(kShmPath, &info) != 0) return std::numeric_limits<std::size_t>::max();
  return static_cast<std::size_t>(info.f_bavail) * info.f_frsize;
}

std::size_t parse_bytes(const std::string& text) {
  std::size_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    return std::numeric_limits<std::size_t>::max();  // not ours to judge: assume room
  }
  return value;
}

/// "the main channel": the last part of the channel's store namespace (".../main/").
std::string channel_name(std::string_view key_prefix) {
  while (key_prefix.ends_with('/')) key_prefix.remove_suffix(1);
  const auto slash = key_prefix.rfind('/');
  if (slash != std::string_view::npos) key_prefix.remove_prefix(slash + 1);
  return fmt::format("the {} channel", key_prefix);
}

std::string mib(std::size_t bytes) {
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / kMiB);
}

constexpr char kFix[] =
    "give /dev/shm more room: `docker run --shm-size=1g` (Docker's default is 64 MiB), or on "
    "Kubernetes mount an `emptyDir{medium: Memory}` with a larger sizeLimit at /dev/shm";

}  // namespace

std::size_t ring_bytes_that_fit(std::size_t budget_bytes, int size, std::size_t wanted) {
  for (std::size_t ring = wanted; ring > 0; ring /= 2) {
    if (shm_segment_bytes(size, ring) * static_cast<std::size_t>(size) <= budget_bytes) {
      return ring;
    }
    if (ring / 2 < kMinShmRingBytes) break;  // a smaller ring than asked for, but not tiny
  }
  return 0;
}

ShmPlan plan_shm_rings(rendezvous::Store& store, const MeshOptions& mesh, int rank, int size,
                       std::size_t wanted_ring_bytes, TransportKind requested) {
  const std::string free_key = mesh.key_prefix + "shm-capacity";
  const std::string decision_key = mesh.key_prefix + "shm-capacity/decision";
  const GlobalRanks& global = mesh.global_ranks;
  constexpr std::string_view kStep = "set-up of shared memory (room in /dev/shm)";

  ShmPlan plan;
  if (rank == 0) {
    const auto frees = all_gather_in_group(store, free_key, std::to_string(free_shm_bytes()), rank,
                                           size, mesh.connect_timeout, global, kStep);
    std::size_t smallest = std::numeric_limits<std::size_t>::max();
    int tightest = 0;
    for (int r = 0; r < size; ++r) {
      const std::size_t free = parse_bytes(frees[static_cast<std::size_t>(r)]);
      if (free < smallest) {
        smallest = free;
        tightest = r;
      }
    }
    plan.ring_bytes = ring_bytes_that_fit(smallest / 2, size, wanted_ring_bytes);
    const std::size_t wanted_total =
        shm_segment_bytes(size, wanted_ring_bytes) * static_cast<std::size_t>(size);
    // Published before a throw below, so the other ranks fail the same way instead of waiting.
    store.set(decision_key, std::to_string(plan.ring_bytes));
    if (plan.ring_bytes != wanted_ring_bytes) {
      const std::string situation = fmt::format(
          "/dev/shm has {} free (rank {}), and {}'s shared-memory rings of {} KiB for {} "
          "ranks would take {}, more than the half of it a channel may use",
          mib(smallest), global(tightest), channel_name(mesh.key_prefix),
          wanted_ring_bytes >> 10, size, mib(wanted_total));
      if (plan.ring_bytes == 0 && requested == TransportKind::shm) {
        throw core::rank_error(ErrorKind::invalid_config, global(rank),
                               "RINGFUSE_TRANSPORT=shm, but {}, and even {} KiB rings do not "
                               "fit; {}, or use RINGFUSE_TRANSPORT=auto (TCP then)",
                               situation, kMinShmRingBytes >> 10, kFix);
      }
      plan.warning = fmt::format(
          "ringfuse: {}; so it uses {} instead (slower for large messages); {}", situation,
          plan.ring_bytes == 0 ? std::string("TCP between these ranks")
                               : fmt::format("{} KiB rings", plan.ring_bytes >> 10),
          kFix);
    }
    return plan;
  }
  store.set(fmt::format("{}/{}", free_key, rank), std::to_string(free_shm_bytes()));
  try {
    plan.ring_bytes = parse_bytes(store.get(decision_key, mesh.connect_timeout));
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::timeout) throw;
    throw core::error_at(ErrorKind::timeout, global(rank), global(0),
                         "{}: {} did not decide the ring size within {} s "
                         "(RINGFUSE_CONNECT_TIMEOUT_S): it waits for every rank of this host, "
                         "so one of them is not running or cannot reach the rendezvous store",
                         kStep, global.name(0), mesh.connect_timeout.count() / 1000);
  }
  if (plan.ring_bytes == 0 && requested == TransportKind::shm) {
    throw core::rank_error(ErrorKind::invalid_config, global(rank),
                           "RINGFUSE_TRANSPORT=shm, but /dev/shm has no room for {}'s "
                           "shared-memory rings for {} ranks (rank {} names the sizes); {}",
                           channel_name(mesh.key_prefix), size, global(0), kFix);
  }
  return plan;
}

}  // namespace ringfuse::transport
