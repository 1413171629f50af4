#include "transport/shm_transport.hpp"

#include "transport/failure_report.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <new>
#include <system_error>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "reduce/reduce.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::transport {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr std::uint64_t kSegmentMagic = 0x52465348'4d000001;  // "RFSHM", layout version 1
constexpr std::uint32_t kLivenessMagic = 0x52464c56;          // "RFLV"
constexpr std::size_t kHeaderBytes = 2 * shm::kLineStride;    // magic line + doorbell line
constexpr std::size_t kProgressGranularity = std::size_t{256} << 10;

// Waiting: a few spins catch a peer that is mid-copy; yields let a descheduled peer run; then
// sleep on the doorbell, waking at least every kSleepSlice to poll liveness and the deadline.
// When the ranks outnumber the CPUs they may use, the peer being waited for is usually not
// running, so spinning only delays it: no spins, more yields (perf/RESULTS.md, run 3: N=4 on
// 2 cores, 4 KiB in ~40-65 us against ~60-145 us; with a CPU each, spinning keeps N=2 at ~2 us
// against ~3.7 us without it).
constexpr WaitPolicy kCpuEach{64, 1};
constexpr WaitPolicy kOversubscribed{0, 8};
constexpr auto kSleepSlice = 1000us;
constexpr auto kLivenessInterval = 1ms;

struct SegmentHeader {
  std::uint64_t magic;
  std::uint64_t ring_bytes;
  std::uint64_t world_size;
};

struct LivenessHello {
  std::uint32_t magic;
  std::uint32_t rank;
  std::uint32_t job_hash;
  std::uint32_t world_size;
};

std::uint32_t fnv1a(std::string_view text) {
  std::uint32_t hash = 2166136261u;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash;
}

std::pair<std::string, std::uint16_t> split_address(const std::string& address) {
  const auto colon = address.rfind(':');
  return {address.substr(0, colon),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

std::size_t slot_bytes(std::size_t ring_bytes) { return sizeof(shm::RingControl) + ring_bytes; }

std::size_t segment_bytes(int size, std::size_t ring_bytes) {
  const std::size_t bytes = kHeaderBytes + static_cast<std::size_t>(size - 1) * slot_bytes(ring_bytes);
  return shm::round_up(bytes, 4096);
}

}  // namespace

std::string host_identity() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  std::string boot_id;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot_id;
  return fmt::format("{}/{}", host, boot_id.empty() ? "no-boot-id" : boot_id);
}

bool use_shared_memory(TransportKind requested, rendezvous::Store& store,
                       const MeshOptions& mesh, int rank, int size) {
  if (requested == TransportKind::tcp || size <= 1) return false;
  const std::string own = host_identity();
  const auto key = [&](int r) { return fmt::format("{}host/{}", mesh.key_prefix, r); };
  store.set(key(rank), own);
  std::vector<std::string> elsewhere;
  for (int peer = 0; peer < size; ++peer) {
    if (peer == rank) continue;
    const std::string identity = store.get(key(peer), mesh.connect_timeout);
    if (identity != own) elsewhere.push_back(fmt::format("rank {} on {}", peer, identity));
  }
  if (elsewhere.empty()) return true;
  if (requested == TransportKind::shm) {
    throw Error(ErrorKind::invalid_config,
                fmt::format("rank {}: RINGFUSE_TRANSPORT=shm needs every rank on this host ({}), "
                            "but {}; use auto or tcp",
                            rank, own, fmt::join(elsewhere, ", ")),
                rank);
  }
  return false;
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

ShmTransport::ShmTransport(int rank, int size, rendezvous::Store& store, ShmOptions options)
    : rank_(rank), size_(size), store_(store), options_(std::move(options)), wait_(kCpuEach) {
  const std::size_t ring = options_.ring_bytes;
  if (ring < 4096 || (ring & (ring - 1)) != 0) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rank {}: shared-memory ring size {} is not a power of two >= 4096",
                            rank_, ring),
                rank_);
  }
  if (size_ <= 1) return;
  const auto deadline = Clock::now() + options_.mesh.connect_timeout;
  connect_liveness(deadline);
  map_segments(deadline);
  wait_ = agree_wait_policy(deadline);
  spdlog::debug("rank {}: shared-memory rings to {} peers ({} KiB each)", rank_, size_ - 1,
                ring >> 10);
}

WaitPolicy ShmTransport::agree_wait_policy(Clock::time_point deadline) {
  // The CPUs this host's ranks may use between them: each rank's own mask may be one CPU
  // (mpirun binds), so only the union says whether the ranks outnumber the CPUs.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  if (::sched_getaffinity(0, sizeof(cpus), &cpus) != 0) {
    // Publish something all the same: the peers are waiting for this key.
    const long online = ::sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < online && cpu < CPU_SETSIZE; ++cpu) CPU_SET(cpu, &cpus);
  }
  const auto key = [&](int r) {
    return fmt::format("{}shm/cpus/{}", options_.mesh.key_prefix, r);
  };
  store_.set(key(rank_), encode_cpus(cpus));
  for (int peer = 0; peer < size_; ++peer) {
    if (peer == rank_) continue;
    const auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    add_cpus(store_.get(key(peer), std::max(wait, std::chrono::milliseconds(1))), cpus);
  }
  return size_ > CPU_COUNT(&cpus) ? kOversubscribed : kCpuEach;
}

ShmTransport::~ShmTransport() {
  if (size_ <= 1 || aborted_ || stalled_) return;
  try {
    record_orderly_close(store_, options_.mesh.key_prefix, rank_);
  } catch (const std::exception& e) {
    spdlog::debug("rank {}: could not record an orderly close: {}", rank_, e.what());
  }
}

void ShmTransport::connect_liveness(Clock::time_point deadline) {
  const auto& mesh = options_.mesh;
  liveness_.resize(static_cast<std::size_t>(size_));
  auto [listener, port] = listen_on(mesh.advertise_host, size_ + 8);
  const auto key = [&](int r) { return fmt::format("{}shm/live/{}", mesh.key_prefix, r); };
  store_.set(key(rank_), fmt::format("{}:{}", mesh.advertise_host, port));
  const LivenessHello own{kLivenessMagic, static_cast<std::uint32_t>(rank_), fnv1a(mesh.job_id),
                          static_cast<std::uint32_t>(size_)};
  const auto refuse = [&](int peer, const std::string& why) -> Error {
    return Error(ErrorKind::peer_failure,
                 fmt::format("rank {}: set-up of shared memory: cannot reach rank {}: {}", rank_,
                             peer, why),
                 rank_, peer);
  };
  for (int peer = 0; peer < rank_; ++peer) {
    const std::string address = store_.get(key(peer), mesh.connect_timeout);
    LivenessHello reply{};
    try {
      const auto [host, peer_port] = split_address(address);
      Socket socket = connect_with_retry(host, peer_port, deadline);
      configure_data_socket(socket.fd(), mesh.user_timeout);
      if (!write_all(socket.fd(), &own, sizeof(own), deadline) ||
          !read_all(socket.fd(), &reply, sizeof(reply), deadline)) {
        throw refuse(peer, "timed out");
      }
      liveness_[peer] = std::move(socket);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw refuse(peer, fmt::format("{} at {}", e.what(), address));
    }
    if (reply.magic != kLivenessMagic || reply.rank != static_cast<std::uint32_t>(peer) ||
        reply.job_hash != own.job_hash) {
      throw Error(ErrorKind::protocol,
                  fmt::format("rank {}: {} answered as rank {} of another job; check that "
                              "RINGFUSE_JOB_ID and RINGFUSE_STORE_ADDR are the same for every "
                              "rank",
                              rank_, address, reply.rank),
                  rank_, peer);
    }
  }
  for (int missing = size_ - 1 - rank_; missing > 0;) {
    pollfd pfd{listener.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, poll_timeout_ms(deadline)) == 0) {
      throw Error(ErrorKind::timeout,
                  fmt::format("rank {}: set-up of shared memory: higher ranks did not connect "
                              "within {} s",
                              rank_, mesh.connect_timeout.count() / 1000),
                  rank_);
    }
    Socket socket(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!socket.valid()) continue;
    configure_data_socket(socket.fd(), mesh.user_timeout);
    LivenessHello hello{};
    try {
      const auto hello_deadline = std::min(deadline, Clock::now() + 5s);
      if (!read_all(socket.fd(), &hello, sizeof(hello), hello_deadline)) continue;
    } catch (const std::exception& e) {
      spdlog::warn("rank {}: dropped a liveness connection during set-up: {}", rank_, e.what());
      continue;
    }
    const int peer = static_cast<int>(hello.rank);
    if (hello.magic != kLivenessMagic || hello.job_hash != own.job_hash || peer <= rank_ ||
        peer >= size_ || liveness_[peer].valid()) {
      spdlog::warn("rank {}: refused a connection that is not a peer of this job", rank_);
      continue;
    }
    if (!write_all(socket.fd(), &own, sizeof(own), deadline)) continue;
    liveness_[peer] = std::move(socket);
    --missing;
  }
}

void ShmTransport::map_segments(Clock::time_point deadline) {
  const auto& mesh = options_.mesh;
  const std::size_t ring = options_.ring_bytes;
  const std::size_t bytes = segment_bytes(size_, ring);
  const auto name_key = [&](int r) { return fmt::format("{}shm/name/{}", mesh.key_prefix, r); };
  const auto mapped_key = [&](int r) { return fmt::format("{}shm/mapped/{}", mesh.key_prefix, r); };
  segments_.resize(static_cast<std::size_t>(size_));
  std::vector<std::string> names(static_cast<std::size_t>(size_));
  int current = rank_;
  try {
    // The key prefix carries job id, generation and channel; the rank makes it unique.
    std::string_view scope = mesh.key_prefix;
    if (scope.starts_with("ringfuse/")) scope.remove_prefix(9);  // segment_name says it
    names[rank_] = shm::segment_name(fmt::format("{}r{}", scope, rank_));
    segments_[rank_] = shm::Segment::create(names[rank_], bytes);
    std::byte* base = segments_[rank_].data();
    new (base) SegmentHeader{kSegmentMagic, ring, static_cast<std::uint64_t>(size_)};
    new (base + shm::kLineStride) shm::Doorbell{};
    for (int sender = 0; sender < size_; ++sender) {
      if (sender != rank_) new (base + kHeaderBytes + slot_of(sender, rank_) * slot_bytes(ring)) shm::RingControl{};
    }
    store_.set(name_key(rank_), names[rank_]);

    for (int peer = 0; peer < size_; ++peer) {
      if (peer == rank_) continue;
      current = peer;
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      names[peer] = store_.get(name_key(peer), std::max(wait, std::chrono::milliseconds(1)));
      segments_[peer] = shm::Segment::open(names[peer], bytes);
      const auto* header = reinterpret_cast<const SegmentHeader*>(segments_[peer].data());
      if (header->magic != kSegmentMagic || header->ring_bytes != ring ||
          header->world_size != static_cast<std::uint64_t>(size_)) {
        throw Error(ErrorKind::protocol,
                    fmt::format("rank {}: shared-memory segment {} of rank {} has another "
                                "layout (a different Ringfuse version?)",
                                rank_, names[peer], peer),
                    rank_, peer);
      }
    }
    current = rank_;
    // Only after every rank mapped every segment may the names go: from then on the memory
    // lives exactly as long as the mappings, so no exit path can leak it.
    store_.set(mapped_key(rank_), "1");
    std::vector<std::string> keys;
    for (int r = 0; r < size_; ++r) keys.push_back(mapped_key(r));
    store_.wait(keys, std::max(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   deadline - Clock::now()),
                               std::chrono::milliseconds(1)));
    segments_[rank_].unlink();
  } catch (const std::exception& e) {
    // A rank that died between creating its segment and the barrier cannot unlink it; whoever
    // learnt the name does (removing a name others still need only fails a set-up that is
    // failing anyway).
    for (const auto& name : names) {
      if (!name.empty()) ::shm_unlink(name.c_str());
    }
    if (dynamic_cast<const Error*>(&e) != nullptr) throw;
    throw Error(ErrorKind::system,
                fmt::format("rank {}: set-up of shared memory with rank {} failed: {}", rank_,
                            current, e.what()),
                rank_, current == rank_ ? Error::kNoRank : current);
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


template <class Consume>
void ShmTransport::exchange(int send_peer, const std::byte* send, std::size_t send_bytes,
                            int recv_peer, std::size_t recv_bytes, std::size_t granule,
                            Consume&& consume) {
  check_exchange(rank_, size_, operation_, aborted_, send_peer, recv_peer);
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
  unsigned idle = 0;
  auto last_progress = Clock::now();
  auto next_liveness = last_progress;

  const auto ready = [&] {
    return (sent < send_bytes && writer->has_space()) ||
           (received < recv_bytes && reader->has_data(std::min(granule, recv_bytes - received)));
  };
  while (sent < send_bytes || received < recv_bytes) {
    bool progressed = false;
    if (sent < send_bytes) {
      const std::size_t n = writer->write(send + sent, std::min(send_bytes - sent, chunk));
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
      idle = 0;
      continue;
    }
    if (++idle <= wait_.spins) {
      cpu_relax();
      continue;
    }
    if (idle <= wait_.spins + wait_.yields) {
      ::sched_yield();
      continue;
    }
    const auto now = Clock::now();
    if (idle == wait_.spins + wait_.yields + 1) last_progress = now;  // first sleep since progress
    if (now >= next_liveness) {
      // Shared memory gives no EOF: ask the liveness connections of the peers we still need.
      if (sent < send_bytes) check_alive(send_peer);
      if (received < recv_bytes) check_alive(recv_peer);
      next_liveness = now + kLivenessInterval;
    }
    if (now - last_progress >= options_.mesh.op_timeout) {
      fail_timeout(received < recv_bytes ? recv_peer : send_peer);
    }
    shm::sleep(doorbell(rank_), kSleepSlice, ready);
  }
}

void ShmTransport::send_recv(int send_peer, const void* send_buf, std::size_t send_bytes,
                             int recv_peer, void* recv_buf, std::size_t recv_bytes,
                             const RecvProgress& progress) {
  auto* in = static_cast<std::byte*>(recv_buf);
  std::size_t reported = 0;
  exchange(send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer, recv_bytes,
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
  exchange(send_peer, static_cast<const std::byte*>(send_buf), send_bytes, recv_peer,
           recv_count * element_bytes, element_bytes,
           [&](std::span<const std::byte> piece, std::size_t offset) {
             const std::size_t count = piece.size() / element_bytes;
             if (count > 0) reduce::reduce_into(out + offset, piece.data(), count, type, op);
             return count * element_bytes;
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
  const std::string message = describe_lost_peer(store_, options_.mesh.key_prefix, rank_,
                                                 operation_, peer, what, peer_closed);
  aborted_ = message;
  liveness_.clear();  // closing every liveness connection tells every neighbour at once
  spdlog::error("{}", message);
  throw Error(ErrorKind::peer_failure, message, rank_, peer);
}

void ShmTransport::fail_timeout(int stalled) {
  stalled_ = true;
  throw stalled_peer_error(rank_, operation_, stalled, options_.mesh.op_timeout);
}

}  // namespace ringfuse::transport
