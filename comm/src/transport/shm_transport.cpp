#include "transport/shm_transport.hpp"

#include "transport/failure_report.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <new>
#include <random>
#include <sstream>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "reduce/reduce.hpp"
#include "ringfuse/error.hpp"
#include "transport/full_mesh.hpp"
#include "transport/group_gather.hpp"
#include "transport/return_schedule.hpp"
#include "transport/shared_memory_proof.hpp"
#include "transport/shm_capacity.hpp"
#include "transport/shm_cross_memory.hpp"
#include "transport/shm_placement.hpp"
#include "transport/unlink_on_signal.hpp"

namespace ringfuse::transport {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kSegmentMagic = 0x52465348'4d000003;  // "RFSHM", layout version 3
// The magic line, the doorbell line, the window-barrier line and the cross-memory lines
// (shm_cross_memory.hpp).
constexpr std::size_t kHeaderBytes = shm::kCrossMemoryEnd;
constexpr std::size_t kWindowArrivalsOffset = 2 * shm::kLineStride;
constexpr std::size_t kProgressGranularity = std::size_t{256} << 10;

// Waiting: a few spins catch a peer that is mid-copy; yields let a descheduled peer run; then
// sleep on the doorbell, waking at least every kSleepSlice to poll liveness and the deadline.
// When the ranks outnumber the CPUs they may use, the peer being waited for is usually not
// running, so spinning only delays it: no spins, more yields (perf/RESULTS.md, run 3: N=4 on
// 2 cores, 4 KiB in ~40-65 us against ~60-145 us; with a CPU each, spinning keeps N=2 at ~2 us
// against ~3.7 us without it).
// With a CPU each, a rank keeps checking (yielding in between) for 1 ms before it sleeps.
// Sleeping after a few microseconds made back-to-back small collectives fall into a convoy:
// the rank that rings a sleeper pays the futex wake and the sleeper the wake-up (16-47 us on
// this VM), so each comes late to the other's next message, and that one sleeps in turn: one
// 4 KiB all-reduce in ten took 16-47 us instead of 1.5-5 (perf/RESULTS.md, issue 18,
// 2026-12-05, 06:15). Yielding, not spinning, lets a peer that shares the core run.
// With RINGFUSE_SHM_LARGE_WAIT=sleep, an oversubscribed rank in a large exchange sleeps at
// once: a sched_yield() hands the core to whatever else is runnable there, and when that is
// the training's compute threads they keep it for a whole time slice. One 25 MiB all-reduce
// beside a busy compute thread per rank, N = 4 on 2 cores, took 2.0-2.3x Gloo's with the
// yields and 0.41-0.48x sleeping at once. Not the default: when the only other runnable
// threads are the ranks' own, a yield lets a peer finish its piece in microseconds, and
// sleeping at once made ResNet-50's fused step at N = 4 1.3-1.4x slower; a yield's length did
// not tell the two apart (perf/RESULTS.md, issue 21, 07:30). Small exchanges always yield
// first: sleeping at once made a 4 KiB all-reduce 2-3x slower.
// With a CPU per rank the same holds beside compute threads: in DDP at N = 2 on 2 CPUs, a
// bucket's all-reduce runs beside backward (or DDP's copying out of the last bucket), and
// resnet18's three buckets took 1.2-2.4, 15-18 and 8-10 ms from the last rank's launch
// sleeping at once against 5-7, 21-25 and 9-10 yielding first (perf/RESULTS.md, issue 21,
// sixteenth session). A rank woken by its peer's doorbell preempts the compute thread; one
// that yields waits for the compute thread's time slice to end.
// The 1 ms (once 50 us) covers how far DDP's ranks drift apart in a step: the first rank to
// launch a bucket waits 0.1-0.4 ms for the last. Asleep by then, it cost the last rank 11-40 us
// of CPU time in the FUTEX_WAKE of its first message (median 11: waking an idle vCPU of this VM
// is that dear), in the middle of the all-reduce that both wait for; and the sleeper then woke
// up. Yielding for 1 ms, the CNN's 72 KiB bucket of perf/ddp_vs_gloo.py at N = 2 took 0.11-0.16
// ms from the last rank's launch (0.11-0.13 in three runs of four) instead of 0.16-0.18
// (resnet18's 0.3 s steps alike either way; perf/RESULTS.md, issue 21, eighteenth session). A rank with nothing to run but a yielding
// peer loses nothing to it; one running compute threads gets its core back at each yield.
constexpr std::size_t kNeverSleepAtOnce = std::numeric_limits<std::size_t>::max();
constexpr std::size_t kLargeExchange = std::size_t{256} << 10;
constexpr WaitPolicy kCpuEach{64, 1, std::chrono::microseconds{1000}, kNeverSleepAtOnce};
constexpr WaitPolicy kCpuEachLargeSleep{64, 1, std::chrono::microseconds{1000}, kLargeExchange};
constexpr WaitPolicy kOversubscribed{0, 8, std::chrono::microseconds{0}, kNeverSleepAtOnce};
constexpr WaitPolicy kOversubscribedLargeSleep{0, 8, std::chrono::microseconds{0},
                                               kLargeExchange};
// A rank whose peer keeps being put on its CPU moves at most this often: the migration
// costs two system calls and the caches of the CPU it leaves. Once a millisecond was too
// rare: the scheduler put unbound ranks together again within a few 10-25 us steps, and the
// fused scalar step stayed at 17-24 us in 3 of 10 runs (100 us: 10.0-13.7 in 12 of 12;
// perf/RESULTS.md, issue 18).
constexpr auto kMoveInterval = 100us;
// Unreduced pieces sent before the first reduced one in reduce_and_return (return_schedule.hpp).
// With one, as over TCP, each reduced piece waits for a round trip, and a rank whose core is
// shared with a busy thread gives that thread a time slice at each wait (its yields): beside a
// busy thread per core, N = 2, a 16 MiB all-reduce took 120 ms against 12-14 ms for the two
// halves one after the other. Two pieces ahead took 6.4-6.8 ms there and 3 was alike, 4 (the
// whole ring) 18 ms. Without the busy threads two ahead took 6-17 % less time than the halves
// one after the other from 4 MiB to 64 MiB (perf/RESULTS.md, fifteenth session).
constexpr std::size_t kReturnLookahead = 2;
constexpr auto kSleepSlice = 1000us;
constexpr auto kLivenessInterval = 1ms;

struct SegmentHeader {
  std::uint64_t magic;
  std::uint64_t ring_bytes;
  std::uint64_t world_size;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::uint64_t random_nonce() {
  std::random_device device;
  return (std::uint64_t{device()} << 32) | device();
}

std::size_t slot_bytes(std::size_t ring_bytes) { return sizeof(shm::RingControl) + ring_bytes; }

// What exchange() sends: the next bytes of one buffer, or of a buffer in pieces.
auto contiguous_source(const void* data) {
  return [at = static_cast<const std::byte*>(data)](shm::RingWriter& writer,
                                                    std::size_t max) mutable {
    const std::size_t n = writer.write(at, max);
    at += n;
    return n;
  };
}

auto pieces_source(Pieces pieces) {
  return [cursor = PieceCursor(pieces)](shm::RingWriter& writer, std::size_t max) mutable {
    // Only what fits now, so the cursor never walks past what the ring took.
    return cursor.advance(std::min(max, writer.room()),
                          [&](std::byte* at, std::size_t n, std::size_t) { writer.write(at, n); });
  };
}

}  // namespace

std::size_t shm_segment_bytes(int size, std::size_t ring_bytes) {
  const auto senders = static_cast<std::size_t>(std::max(size - 1, 0));
  return shm::round_up(kHeaderBytes + senders * slot_bytes(ring_bytes), 4096);
}

std::string host_identity() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  return fmt::format("{}/{}", host, boot_id.empty() ? "no-boot-id" : boot_id);
}

std::vector<std::string> gather_host_names(rendezvous::Store& store, const MeshOptions& mesh,
                                           int rank, int size) {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  rendezvous::PrefixStore world(store, mesh.key_prefix);
  return all_gather_in_group(world, "hostname", host, rank, size, mesh.connect_timeout,
                             mesh.global_ranks, "set-up of the TCP mesh (which host each rank is on)");
}

SharedMemoryPlan plan_shared_memory(TransportKind requested, rendezvous::Store& store,
                                    const MeshOptions& mesh, int rank, int size) {
  SharedMemoryPlan plan;
  plan.group = {rank};
  if (requested == TransportKind::tcp || size <= 1) return plan;
  const std::string own = host_identity();
  rendezvous::PrefixStore world(store, mesh.key_prefix);
  const auto identities =
      all_gather_in_group(world, "host", own, rank, size, mesh.connect_timeout,
                          mesh.global_ranks, "set-up of shared memory (which ranks share a host)");
  for (const auto& identity : identities) {
    plan.hosts.push_back(identity.substr(0, identity.find('/')));
  }
  const int global_rank = mesh.global_ranks(rank);
  std::vector<std::string> elsewhere;
  for (int peer = 0; peer < size; ++peer) {
    if (identities[peer] != own) {
      elsewhere.push_back(fmt::format("rank {} on {}", mesh.global_ranks(peer), identities[peer]));
    }
  }
  if (!elsewhere.empty()) {
    if (requested == TransportKind::shm) {
      throw core::rank_error(ErrorKind::invalid_config, global_rank,
                             "RINGFUSE_TRANSPORT=shm needs every rank on this host ({}), but {}; "
                             "use auto or tcp",
                             own, fmt::join(elsewhere, ", "));
    }
    return plan;
  }
  // The same hostname and boot id are only a hint (containers, namespaces): the proof is a
  // segment each rank creates and every other rank opens.
  const auto seen = prove_shared_memory(store, mesh, rank, size);
  const auto pairs = pairs_without_shared_memory(seen);
  if (pairs.empty()) {
    plan.everyone = true;
    plan.group.clear();
    for (int position = 0; position < size; ++position) plan.group.push_back(position);
    return plan;
  }
  std::vector<std::string> named;
  for (const auto& [a, b] : pairs) {
    named.push_back(fmt::format("{}-{}", mesh.global_ranks(a), mesh.global_ranks(b)));
  }
  const std::string why = fmt::format(
      "every rank reports host {}, but these pairs of ranks cannot open each other's shared "
      "memory: {} (separate /dev/shm: containers or network namespaces with one hostname?)",
      own, fmt::join(named, ", "));
  if (requested == TransportKind::shm) {
    throw core::rank_error(ErrorKind::invalid_config, global_rank,
                           "RINGFUSE_TRANSPORT=shm: {}; use auto or tcp", why);
  }
  std::vector<std::string> sharing;
  for (const auto& group : shared_memory_groups(seen)) {
    if (std::find(group.begin(), group.end(), rank) != group.end()) plan.group = group;
    if (group.size() < 2) continue;
    std::vector<int> ranks;
    for (const int position : group) ranks.push_back(mesh.global_ranks(position));
    sharing.push_back(fmt::format("[{}]", fmt::join(ranks, ",")));
  }
  if (rank == 0) {
    spdlog::warn("ringfuse: {}: {}; these pairs use TCP{}", mesh.key_prefix, why,
                 sharing.empty() ? std::string()
                                 : fmt::format(", and shared memory joins ranks {}",
                                               fmt::join(sharing, ", ")));
  }
  return plan;
}

bool use_shared_memory(TransportKind requested, rendezvous::Store& store,
                       const MeshOptions& mesh, int rank, int size) {
  return plan_shared_memory(requested, store, mesh, rank, size).everyone;
}

namespace {

// A CPU set as hex digits (4 CPUs each), for the store.
std::string encode_cpus(const cpu_set_t& cpus) {
  std::string text;
  for (int base = 0; base < CPU_SETSIZE; base += 4) {
    int digit = 0;
    for (int bit = 0; bit < 4; ++bit) digit |= CPU_ISSET(base + bit, &cpus) ? 1 << bit : 0;
    text.push_back("0123456789abcdef"[digit]);
  }
  return text;
}

void add_cpus(const std::string& text, cpu_set_t& cpus) {
  for (std::size_t i = 0; i < text.size() && static_cast<int>(4 * i) < CPU_SETSIZE; ++i) {
    const char c = text[i];
    const int digit = c >= 'a' ? c - 'a' + 10 : c - '0';
    for (int bit = 0; bit < 4; ++bit) {
      if ((digit >> bit) & 1) CPU_SET(static_cast<int>(4 * i) + bit, &cpus);
    }
  }
}

}  // namespace

// The windows of every rank, mapped by every rank; this rank's grows on demand.
class ShmTransport::Window final : public SharedWindow {
 public:
  Window(ShmTransport& transport, std::vector<shm::Segment> segments, std::size_t capacity)
      : transport_(transport), segments_(std::move(segments)), capacity_(capacity) {}

  int rank() const override { return transport_.rank_; }
  int size() const override { return transport_.size_; }
  std::size_t capacity() const override { return capacity_; }
  std::byte* reserve(std::size_t bytes) override {
    auto& own = segments_[transport_.rank_];
    try {
      own.reserve(std::min(bytes, capacity_));
    } catch (const std::system_error& e) {
      throw core::rank_error(ErrorKind::system,
                             transport_.options_.mesh.global_ranks(transport_.rank_),
                             "the shared fusion buffer cannot grow to {} bytes: {}; "
                             "give /dev/shm more room (Kubernetes: an emptyDir with medium: "
                             "Memory mounted there), lower RINGFUSE_FUSION_THRESHOLD, or set "
                             "RINGFUSE_FUSION_SHM=0",
                             bytes, e.what());
    }
    return own.data();
  }
  const std::byte* local() const override { return segments_[transport_.rank_].data(); }
  const std::byte* peer(int rank) const override { return segments_[rank].data(); }
  void barrier() override { transport_.window_barrier(); }

 private:
  ShmTransport& transport_;
  std::vector<shm::Segment> segments_;  // by owner rank
  std::size_t capacity_;
};

ShmTransport::ShmTransport(int rank, int size, rendezvous::Store& store, ShmOptions options)
    : rank_(rank),
      size_(size),
      options_(std::move(options)),
      world_(store, options_.mesh.key_prefix),
      reports_(store, options_.mesh.report_prefix.empty() ? options_.mesh.key_prefix
                                                           : options_.mesh.report_prefix),
      abort_state_(options_.mesh.abort_state ? options_.mesh.abort_state
                                             : std::make_shared<AbortState>()),
      wait_(kCpuEach) {
  const std::size_t ring = options_.ring_bytes;
  if (ring < 4096 || (ring & (ring - 1)) != 0) {
    throw core::rank_error(ErrorKind::invalid_argument, options_.mesh.global_ranks(rank_),
                           "shared-memory ring size {} is not a power of two >= 4096", ring);
  }
  if (size_ <= 1) return;
  const auto deadline = Clock::now() + options_.mesh.connect_timeout;
  connect_liveness(deadline);
  map_segments(deadline);
  agree_on_host(deadline);
  spdlog::debug("rank {}: shared-memory rings to {} peers ({} KiB each)",
                options_.mesh.global_ranks(rank_), size_ - 1,
                ring >> 10);
  if (cross_memory_) {
    spdlog::debug("rank {}: {}: cross-memory: large all-reduces read and write the peers' "
                  "buffers in place",
                  options_.mesh.global_ranks(rank_), options_.mesh.key_prefix);
  }
  if (window_) {
    spdlog::debug("rank {}: {}: shared window of up to {} KiB per rank",
                  options_.mesh.global_ranks(rank_),
                  options_.mesh.key_prefix, options_.window_bytes >> 10);
  }
}

void ShmTransport::agree_on_host(Clock::time_point deadline) {
  // The CPUs this host's ranks may use between them: each rank's own mask may be one CPU
  // (mpirun binds), so only the union says whether the ranks outnumber the CPUs.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (::sched_getaffinity(0, sizeof(cpus), &cpus) != 0) {
    // Publish something all the same: the peers are waiting for this key.
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < online && cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &cpus);
  }
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  // "<cpus> <1 when this rank reached every peer's memory, else 0> <its cross_memory_min_bytes>"
  const bool asked = options_.cross_memory_min_bytes > 0;
  std::string why_not;
  const bool reached = asked && CrossMemory::probe(*this, why_not);
  const auto facts = all_gather_in_group(
      world_, "shm/cpus",
      fmt::format("{} {} {}", encode_cpus(cpus), reached ? 1 : 0, options_.cross_memory_min_bytes),
      rank_, size_, std::max(wait, std::chrono::milliseconds(1)), options_.mesh.global_ranks,
      "set-up of shared memory (CPUs of this host)");
  const bool unbound = CPU_COUNT(&cpus) > 1;  // still this rank's own mask
  bool everyone_reached = asked;
  std::size_t min_bytes = 0;
  std::vector<std::size_t> every_min;
  std::vector<int> unreached;  // global ranks that asked for it and could not
  for (int position = 0; position < size_; ++position) {
    std::istringstream fields(facts[position]);
    std::string mask;
    int rank_reached = 0;
    std::size_t rank_min = 0;
    fields >> mask >> rank_reached >> rank_min;
    add_cpus(mask, cpus);
    everyone_reached = everyone_reached && rank_reached == 1;
    if (rank_reached != 1 && rank_min > 0) {
      unreached.push_back(options_.mesh.global_ranks(position));
    }
    min_bytes = std::max(min_bytes, rank_min);
    every_min.push_back(rank_min);
  }
  if (everyone_reached) {
    if (rank_ == 0 && std::adjacent_find(every_min.begin(), every_min.end(),
                                         std::not_equal_to<>()) != every_min.end()) {
      spdlog::warn("ringfuse: {}: the ranks set different RINGFUSE_CROSS_MEMORY_MIN values "
                   "(in bytes, by rank: {}); all use the largest, {}",
                   options_.mesh.key_prefix, fmt::join(every_min, ", "), min_bytes);
    }
    cross_memory_ = std::make_unique<CrossMemory>(*this, min_bytes);
  } else if (asked && !reached) {
    // Not an error: the rings carry everything, with one copy more.
    spdlog::log(rank_ == 0 ? spdlog::level::info : spdlog::level::debug,
                "rank {}: {}: {}, so large all-reduces copy through the shared-memory rings "
                "(the ranks may read each other's buffers in place where the kernel lets them "
                "ptrace each other: kernel.yama.ptrace_scope 0, or the capability SYS_PTRACE; "
                "RINGFUSE_CROSS_MEMORY_MIN=off silences this)",
                options_.mesh.global_ranks(rank_), options_.mesh.key_prefix, why_not);
  } else if (reached && rank_ == 0 && !unreached.empty()) {
    spdlog::info("rank {}: {}: rank{} {} cannot reach the peers' memory (the debug log there "
                 "says why), so large all-reduces copy through the shared-memory rings",
                 options_.mesh.global_ranks(rank_), options_.mesh.key_prefix,
                 unreached.size() == 1 ? "" : "s", fmt::join(unreached, ", "));
  }
  if (size_ > CPU_COUNT(&cpus)) {
    wait_ = options_.mesh.large_waits_sleep ? kOversubscribedLargeSleep : kOversubscribed;
    return;
  }
  may_move_ = unbound;
  wait_ = options_.mesh.large_waits_sleep ? kCpuEachLargeSleep : kCpuEach;
}

ShmTransport::~ShmTransport() {
  // A rank that failed on another channel (a cross-host link) is not leaving in order either.
  if (size_ <= 1 || aborted_ || stalled_ || abort_state_->reason()) return;
  try {
    record_orderly_close(reports_, options_.mesh.global_ranks(rank_));
  } catch (const std::exception& e) {
    spdlog::debug("rank {}: could not record an orderly close: {}", rank_, e.what());
  }
}

void ShmTransport::connect_liveness(Clock::time_point deadline) {
  liveness_ = connect_full_mesh(
      rank_, size_, world_,
      full_mesh_options(options_.mesh, "shm/live",
                        "set-up of shared memory (liveness connections)"),
      deadline);
}

void ShmTransport::map_segments(Clock::time_point deadline) {
  const auto& mesh = options_.mesh;
  const GlobalRanks& global = mesh.global_ranks;  // rank_ and peers are positions
  const std::size_t ring = options_.ring_bytes;
  const std::size_t bytes = shm_segment_bytes(size_, ring);
  const auto time_left = [&] {
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()),
                    std::chrono::milliseconds(1));
  };
  segments_.resize(static_cast<std::size_t>(size_));
  std::vector<shm::Segment> windows(static_cast<std::size_t>(size_));
  std::vector<std::string> names(static_cast<std::size_t>(size_));
  std::vector<std::string> window_names(static_cast<std::size_t>(size_));
  // Until every rank has mapped our names, a signal that kills this rank removes them first
  // (the launcher stops a job whose rank died with SIGTERM while we wait in the store).
  std::vector<shm::UnlinkOnSignal> guards;
  int current = rank_;
  try {
    // The key prefix carries job id, generation and channel; the rank makes it unique.
    std::string_view scope = mesh.key_prefix;
    if (scope.starts_with("ringfuse/")) scope.remove_prefix(9);  // segment_name says it
    names[rank_] = shm::segment_name(fmt::format("{}r{}", scope, rank_));
    guards.emplace_back(names[rank_]);  // before the name exists: no moment unguarded
    segments_[rank_] = shm::Segment::create(names[rank_], bytes);
    std::byte* base = segments_[rank_].data();
    new (base) SegmentHeader{kSegmentMagic, ring, static_cast<std::uint64_t>(size_)};
    new (base + shm::kLineStride) shm::Doorbell{};
    new (base + kWindowArrivalsOffset) std::atomic<std::uint64_t>{0};
    auto* reach = new (base + shm::kCrossMemoryLineOffset) shm::CrossMemoryLine{
        static_cast<std::uint64_t>(::getpid()), 0, random_nonce(), {0}, {0}};
    reach->nonce_address = reinterpret_cast<std::uintptr_t>(&reach->nonce);
    new (base + shm::kPieceCountersOffset) shm::PieceCounters{};
    for (int sender = 0; sender < size_; ++sender) {
      if (sender != rank_) new (base + kHeaderBytes + slot_of(sender, rank_) * slot_bytes(ring)) shm::RingControl{};
    }
    // Every rank publishes "<ring segment> <window bytes> <window segment>", window bytes 0
    // for none; there is a window only when every rank made one of the same size.
    std::string published = fmt::format("{} 0 -", names[rank_]);
    if (options_.window_bytes > 0 && window_fits()) {
      window_names[rank_] = shm::segment_name(fmt::format("{}r{}w", scope, rank_));
      guards.emplace_back(window_names[rank_]);
      windows[rank_] = shm::Segment::create_on_demand(window_names[rank_], options_.window_bytes);
      published = fmt::format("{} {} {}", names[rank_], options_.window_bytes, window_names[rank_]);
    }
    const auto segments =
        all_gather_in_group(world_, "shm/segments", published, rank_, size_, time_left(),
                            global, "set-up of shared memory (publishing segments)");

    bool every_window = !window_names[rank_].empty();
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      current = peer;
      std::istringstream fields(segments[peer]);
      std::string window_bytes;
      std::string window_name;
      fields >> names[peer] >> window_bytes >> window_name;
      if (window_bytes != "0") window_names[peer] = window_name;
      every_window = every_window && window_bytes == std::to_string(options_.window_bytes);
    }
    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      current = peer;
      segments_[peer] = shm::Segment::open(names[peer], bytes);
      const auto* header = reinterpret_cast<const SegmentHeader*>(segments_[peer].data());
      if (header->magic != kSegmentMagic || header->ring_bytes != ring ||
          header->world_size != static_cast<std::uint64_t>(size_)) {
        throw core::error_at(ErrorKind::protocol, global(rank_), global(peer),
                             "shared-memory segment {} of {} has another layout (a "
                             "different Ringfuse version?)",
                             names[peer], global.name(peer));
      }
      if (every_window) {
        windows[peer] = shm::Segment::open_on_demand(window_names[peer], options_.window_bytes);
      }
    }
    current = rank_;
    // Only after every rank mapped every segment may the names go: from then on the memory
    // lives exactly as long as the mappings, so no exit path can leak it.
    all_gather_in_group(world_, "shm/mapped", "1", rank_, size_, time_left(), global,
                        "set-up of shared memory (mapping segments)");
    segments_[rank_].unlink();
    windows[rank_].unlink();
    if (every_window) {
      window_ = std::make_unique<Window>(*this, std::move(windows), options_.window_bytes);
    } else if (options_.window_bytes > 0 && rank_ == 0) {
      spdlog::info("ringfuse: {}: no shared window: not every rank asked for one of {} bytes "
                   "or had room for it in /dev/shm",
                   mesh.key_prefix, options_.window_bytes);
    }
  } catch (const std::exception& e) {
    // A rank that died between creating its segment and the barrier cannot unlink it; whoever
    // learnt the name does (removing a name others still need only fails a set-up that is
    // failing anyway). Names nobody learnt are the launcher's to remove (launcher/
    // shm_cleanup.hpp).
    for (const auto* list : {&names, &window_names}) {
      for (const auto& name : *list) {
        if (!name.empty()) ::shm_unlink(name.c_str());
      }
    }
    if (dynamic_cast<const Error*>(&e) != nullptr) throw;
    throw core::error_at(ErrorKind::system, global(rank_),
                         current == rank_ ? Error::kNoRank : global(current),
                         "set-up of shared memory with {} failed: {}", global.name(current),
                         e.what());
  }

  writers_.resize(static_cast<std::size_t>(size_));
  readers_.resize(static_cast<std::size_t>(size_));
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    std::byte* out = segments_[peer].data() + kHeaderBytes + slot_of(rank_, peer) * slot_bytes(ring);
    writers_[peer] = shm::RingWriter(reinterpret_cast<shm::RingControl*>(out),
                                     out + sizeof(shm::RingControl), ring);
    std::byte* in = segments_[rank_].data() + kHeaderBytes + slot_of(peer, rank_) * slot_bytes(ring);
    readers_[peer] = shm::RingReader(reinterpret_cast<shm::RingControl*>(in),
                                     in + sizeof(shm::RingControl), ring);
  }
}

std::size_t ShmTransport::slot_of(int sender, int receiver) const {
  return static_cast<std::size_t>(sender < receiver ? sender : sender - 1);
}

shm::Doorbell& ShmTransport::doorbell(int owner) const {
  return *reinterpret_cast<shm::Doorbell*>(segments_[owner].data() + shm::kLineStride);
}

std::atomic<std::uint64_t>& ShmTransport::window_arrivals(int owner) const {
  return *reinterpret_cast<std::atomic<std::uint64_t>*>(segments_[owner].data() +
                                                        kWindowArrivalsOffset);
}

SharedWindow* ShmTransport::shared_window() { return window_.get(); }

PeerMemory* ShmTransport::peer_memory() { return cross_memory_.get(); }

bool ShmTransport::window_fits() const {
  // Every rank of this host grows its window in the same /dev/shm; knowing now beats a full
  // /dev/shm in the middle of training.
  struct statvfs info {};
  if (::statvfs("/dev/shm", &info) != 0) return true;  // not a tmpfs we can see; try
  const std::size_t free = static_cast<std::size_t>(info.f_bavail) * info.f_frsize;
  const std::size_t needed = options_.window_bytes * static_cast<std::size_t>(size_);
  if (free >= needed) return true;
  spdlog::log(rank_ == 0 ? spdlog::level::info : spdlog::level::debug,
              "rank {}: {}: /dev/shm has {} MiB free, the shared windows of {} ranks need up to "
              "{} MiB, so the fusion buffer stays in private memory (one copy more per fused "
              "all-reduce); give /dev/shm more room or lower RINGFUSE_FUSION_THRESHOLD",
              rank_, options_.mesh.key_prefix, free >> 20, size_, needed >> 20);
  return false;
}

template <class Ready>
void ShmTransport::idle(Idle& state, std::span<const int> waiting_for, Ready&& ready) {
  ++state.rounds;
  if (state.rounds == 1 && may_move_) keep_apart_from(waiting_for.front());
  if (!state.sleep_at_once && state.rounds <= wait_.spins) {
    cpu_relax();
    return;
  }
  if (!state.sleeping) {
    const auto now = Clock::now();
    if (state.rounds == wait_.spins + 1) state.since = now;  // the first yield
    if (!state.sleep_at_once &&
        (state.rounds <= wait_.spins + wait_.yields || now - state.since < wait_.poll_for)) {
      ::sched_yield();
      return;
    }
    state.sleeping = true;
    state.since = now;  // the first sleep since progress: the operation timeout counts from here
  }
  const auto now = Clock::now();
  // At the first sleep of a wait, then at most every kLivenessInterval: a poll per stalled
  // chunk would cost the ring exchanges more than they wait.
  if (now >= state.next_liveness) {
    // Shared memory gives no EOF: ask the liveness connections of the peers we still need.
    for (const int peer : waiting_for) check_alive(peer);
    state.next_liveness = now + kLivenessInterval;
  }
  if (now - state.since >= options_.mesh.op_timeout) fail_timeout(waiting_for.front());
  shm::sleep(doorbell(rank_), kSleepSlice, ready);
}

void ShmTransport::idle(Idle& state, std::span<const int> waiting_for,
                        const std::function<bool()>& ready) {
  idle<const std::function<bool()>&>(state, waiting_for, ready);
}

void ShmTransport::keep_apart_from(int peer) {
  const std::int32_t here = shm::cpu_tag_of_this_thread();
  // Written only when it changed: the line is the one peers read in every ring().
  auto& mine = doorbell(rank_).cpu_tag;
  if (mine.load(std::memory_order_relaxed) != here) mine.store(here, std::memory_order_relaxed);
  if (here == 0 || doorbell(peer).cpu_tag.load(std::memory_order_relaxed) != here) return;
  const auto now = Clock::now();
  if (now < next_move_) return;
  next_move_ = now + kMoveInterval;
  if (shm::move_this_thread_off(here)) {
    mine.store(shm::cpu_tag_of_this_thread(), std::memory_order_relaxed);
  }
}

void ShmTransport::window_barrier() { arrive_and_wait(false); }

void ShmTransport::arrive_and_wait(bool sleep_at_once) {
  check_exchange(rank_, size_, options_.mesh.global_ranks, operation_, aborted_, kNoPeer,
                 kNoPeer);
  const std::uint64_t epoch = ++window_epoch_;
  // Release: what this rank wrote to its window before is visible to whoever sees the count.
  window_arrivals(rank_).store(epoch, std::memory_order_release);
  for (int peer = 0; peer < size_; ++peer) {
    if (peer != rank_) shm::ring(doorbell(peer));
  }
  const auto arrived = [&](int peer) {
    return window_arrivals(peer).load(std::memory_order_acquire) >= epoch;
  };
  const auto everyone = [&] {
    for (int peer = 0; peer < size_; ++peer) {
      if (!arrived(peer)) return false;
    }
    return true;
  };
  Idle state;
  state.sleep_at_once = sleep_at_once;
  std::size_t missing = static_cast<std::size_t>(size_);
  for (;;) {
    window_waiting_.clear();
    for (int peer = 0; peer < size_; ++peer) {
      if (peer != rank_ && !arrived(peer)) window_waiting_.push_back(peer);
    }
    if (window_waiting_.empty()) return;
    if (window_waiting_.size() < missing) state.progressed();  // someone arrived
    missing = window_waiting_.size();
    idle(state, window_waiting_, everyone);
  }
}


template <class Produce, class Consume>
void ShmTransport::exchange(int send_peer, std::size_t send_bytes, Produce&& produce,
                            int recv_peer, std::size_t recv_bytes, std::size_t granule,
                            Consume&& consume) {
  exchange(send_peer, send_bytes, std::forward<Produce>(produce), recv_peer, recv_bytes, granule,
           std::forward<Consume>(consume), [] { return true; });
}

template <class Produce, class Consume, class CanProduce>
void ShmTransport::exchange(int send_peer, std::size_t send_bytes, Produce&& produce,
                            int recv_peer, std::size_t recv_bytes, std::size_t granule,
                            Consume&& consume, CanProduce&& can_produce) {
  check_exchange(rank_, size_, options_.mesh.global_ranks, operation_, aborted_, send_peer,
                 recv_peer);
  if (send_peer == kNoPeer) send_bytes = 0;
  if (recv_peer == kNoPeer) recv_bytes = 0;
  shm::RingWriter* writer = send_bytes > 0 ? &writers_[send_peer] : nullptr;
  shm::RingReader* reader = recv_bytes > 0 ? &readers_[recv_peer] : nullptr;
  if (writer != nullptr) writer->begin_message();
  if (reader != nullptr) reader->begin_message();
  // A quarter of the ring per step: small enough that the peer works on one part while we
  // fill the next, large enough that handing over costs little.
  const std::size_t chunk = options_.ring_bytes / 4;
  std::size_t sent = 0;
  std::size_t received = 0;
  Idle waiting;
  waiting.sleep_at_once = std::max(send_bytes, recv_bytes) >= wait_.sleep_from_bytes;
  int waiting_for[2] = {kNoPeer, kNoPeer};

  const auto ready = [&] {
    return (sent < send_bytes && can_produce() && writer->has_space()) ||
           (received < recv_bytes && reader->has_data(std::min(granule, recv_bytes - received)));
  };
  while (sent < send_bytes || received < recv_bytes) {
    bool progressed = false;
    if (sent < send_bytes) {
      const std::size_t n = produce(*writer, std::min(send_bytes - sent, chunk));
      if (n > 0) {
        sent += n;
        progressed = true;
        shm::ring(doorbell(send_peer));
      }
    }
    if (received < recv_bytes) {
      const auto piece = reader->peek(std::min(recv_bytes - received, chunk));
      const std::size_t n = piece.empty() ? 0 : consume(piece, received);
      if (n > 0) {
        reader->consume(n);
        received += n;
        progressed = true;
        shm::ring(doorbell(recv_peer));
      }
    }
    if (progressed) {
      waiting.progressed();
      continue;
    }
    // The peer named first when nothing comes is the one we receive from.
    std::size_t peers = 0;
    if (received < recv_bytes) waiting_for[peers++] = recv_peer;
    if (sent < send_bytes) waiting_for[peers++] = send_peer;
    idle(waiting, std::span<const int>(waiting_for, peers), ready);
  }
}

bool ShmTransport::wait_readable(int peer, std::chrono::microseconds timeout) {
  check_exchange(rank_, size_, options_.mesh.global_ranks, operation_, aborted_, kNoPeer, peer);
  shm::RingReader& reader = readers_[static_cast<std::size_t>(peer)];
  // Skips the previous message's padding, as the receive will (no-op when aligned).
  reader.begin_message();
  const auto ready = [&] { return reader.has_data(); };
  const auto deadline = Clock::now() + timeout;
  while (!ready()) {
    check_alive(peer);
    const auto now = Clock::now();
    if (now >= deadline) return false;
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now);
    shm::sleep(doorbell(rank_), std::min<std::chrono::microseconds>(left, kSleepSlice), ready);
  }
  return true;
}

void ShmTransport::send_recv(int send_peer, const void* send_buf, std::size_t send_bytes,
                             int recv_peer, void* recv_buf, std::size_t recv_bytes,
                             const RecvProgress& progress) {
  auto* in = static_cast<std::byte*>(recv_buf);
  std::size_t reported = 0;
  exchange(send_peer, send_bytes, contiguous_source(send_buf), recv_peer, recv_bytes,
           1, [&](std::span<const std::byte> piece, std::size_t offset) {
             std::memcpy(in + offset, piece.data(), piece.size());
             const std::size_t received = offset + piece.size();
             if (progress && (received == recv_bytes || received - reported >= kProgressGranularity)) {
               progress(received);
               reported = received;
             }
             return piece.size();
           });
}

void ShmTransport::send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                                    int recv_peer, void* dst, std::size_t recv_count,
                                    DataType type, ReduceOp op, const Staging&) {
  const std::size_t element_bytes = element_size(type);
  auto* out = static_cast<std::byte*>(dst);
  // Reduce straight out of the ring: the received bytes are never copied.
  exchange(send_peer, send_bytes, contiguous_source(send_buf), recv_peer,
           recv_count * element_bytes, element_bytes,
           [&](std::span<const std::byte> piece, std::size_t offset) {
             const std::size_t count = piece.size() / element_bytes;
             if (count > 0) reduce::reduce_into(out + offset, piece.data(), count, type, op);
             return count * element_bytes;
           });
}

void ShmTransport::reduce_and_return(int peer, std::byte* give, std::size_t give_count,
                                     std::byte* keep, std::size_t keep_count, DataType type,
                                     ReduceOp op, const Staging& staging,
                                     const Finish& finish) {
  if (peer == kNoPeer) {
    Transport::reduce_and_return(peer, give, give_count, keep, keep_count, type, op, staging,
                                 finish);
    return;
  }
  const std::size_t element_bytes = element_size(type);
  const std::size_t give_bytes = give_count * element_bytes;
  const std::size_t keep_bytes = keep_count * element_bytes;
  // A quarter of the ring at most, so that the pieces ahead leave room for a reduced one.
  const std::size_t piece =
      std::min(return_piece_bytes(give_bytes + keep_bytes), options_.ring_bytes / 4);
  const auto outgoing = return_schedule(give_bytes, keep_bytes, piece, kReturnLookahead);
  // The peer's schedule: its `give` is our `keep`.
  const auto incoming = return_schedule(keep_bytes, give_bytes, piece, kReturnLookahead);
  std::size_t send_index = 0;  // outgoing segment in progress, and its bytes already written
  std::size_t sent = 0;
  std::size_t recv_index = 0;  // incoming segment in progress, and its bytes already taken
  std::size_t received = 0;
  std::size_t finished = 0;  // pieces of `keep` reduced and finished: these may go back
  const auto can_send = [&] {
    return send_index < outgoing.size() &&
           (outgoing[send_index].kind == ReturnSegment::give ||
            outgoing[send_index].index < finished);
  };
  exchange(
      peer, give_bytes + keep_bytes,
      [&](shm::RingWriter& writer, std::size_t max) {
        std::size_t written = 0;
        while (written < max && can_send()) {
          const ReturnSegment& segment = outgoing[send_index];
          const std::byte* from =
              (segment.kind == ReturnSegment::give ? give : keep) + segment.offset + sent;
          const std::size_t n = writer.write(from, std::min(max - written, segment.bytes - sent));
          if (n == 0) break;
          written += n;
          sent += n;
          if (sent == segment.bytes) {
            ++send_index;
            sent = 0;
          }
        }
        return written;
      },
      peer, keep_bytes + give_bytes, element_bytes,
      [&](std::span<const std::byte> bytes, std::size_t) {
        const ReturnSegment& segment = incoming[recv_index];
        std::size_t used = std::min(bytes.size(), segment.bytes - received);
        if (segment.kind == ReturnSegment::give) {
          // The peer's unreduced piece of our `keep`: reduced straight out of the ring.
          const std::size_t count = used / element_bytes;
          reduce::reduce_into(keep + segment.offset + received, bytes.data(), count, type, op);
          used = count * element_bytes;
        } else {
          // Its finished piece of our `give`: straight into place.
          std::memcpy(give + segment.offset + received, bytes.data(), used);
        }
        received += used;
        if (received == segment.bytes) {
          if (segment.kind == ReturnSegment::give) {
            if (finish) finish(keep + segment.offset, segment.bytes / element_bytes);
            ++finished;
          }
          ++recv_index;
          received = 0;
        }
        return used;
      },
      can_send);
}

void ShmTransport::send_recv_pieces(int send_peer, Pieces send, int recv_peer, Pieces recv,
                                    const Staging&) {
  PieceCursor into(recv);
  exchange(send_peer, total_bytes(send), pieces_source(send), recv_peer, total_bytes(recv), 1,
           [&](std::span<const std::byte> piece, std::size_t offset) {
             return into.advance(piece.size(), [&](std::byte* at, std::size_t n, std::size_t done) {
               std::memcpy(at, piece.data() + (done - offset), n);
             });
           });
}

void ShmTransport::send_recv_reduce_pieces(int send_peer, Pieces send, int recv_peer,
                                           Pieces dst, DataType type, ReduceOp op,
                                           const Staging&) {
  const std::size_t element_bytes = element_size(type);
  PieceCursor into(dst);
  exchange(send_peer, total_bytes(send), pieces_source(send), recv_peer, total_bytes(dst),
           element_bytes, [&](std::span<const std::byte> piece, std::size_t offset) {
             const std::size_t whole = piece.size() / element_bytes * element_bytes;
             return into.advance(whole, [&](std::byte* at, std::size_t n, std::size_t done) {
               reduce::reduce_into(at, piece.data() + (done - offset), n / element_bytes, type,
                                   op);
             });
           });
}

void ShmTransport::check_alive(int peer) {
  const int fd = liveness_[peer].fd();
  pollfd pfd{fd, POLLIN | POLLRDHUP, 0};
  if (fd < 0 || ::poll(&pfd, 1, 0) <= 0) return;
  char byte = 0;
  const ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (pfd.revents & (POLLHUP | POLLRDHUP)) != 0) {
    fail(peer, "the connection was closed by the peer", true);
  }
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    fail(peer, fmt::format("its liveness connection failed: {}", std::strerror(errno)),
         errno == ECONNRESET);
  }
  // Bytes on the liveness connection are never sent by a peer of this job; ignore them.
}

void ShmTransport::fail(int peer, std::string what, bool peer_closed) {
  const int global_rank = options_.mesh.global_ranks(rank_);
  const int global_peer = options_.mesh.global_ranks(peer);
  const std::string message = describe_lost_peer(reports_, global_rank, operation_, global_peer,
                                                 what, peer_closed);
  aborted_ = message;
  abort_state_->record(message);
  liveness_.clear();  // closing every liveness connection tells every neighbour at once
  spdlog::error("{}", message);
  throw Error(ErrorKind::peer_failure, message, global_rank, global_peer);
}

void ShmTransport::fail_timeout(int stalled) {
  stalled_ = true;
  throw stalled_peer_error(options_.mesh.global_ranks(rank_), operation_,
                           options_.mesh.global_ranks(stalled), options_.mesh.op_timeout);
}

}  // namespace ringfuse::transport
