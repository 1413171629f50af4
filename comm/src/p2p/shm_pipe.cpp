#include "p2p/shm_pipe.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <functional>
#include <cstring>
#include <random>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "transport/unlink_on_signal.hpp"

namespace ringfuse::p2p {
namespace {

constexpr std::uint32_t kOfferMagic = 0x52465348;  // "RFSH"
constexpr std::size_t kTokenBytes = 32;
constexpr std::size_t kNameBytes = 216;
// The reverse ring: the reader's small control frames to the writer (point-to-point's credit
// and clear-to-send), so a rendezvous on shared memory needs no TCP round trip.
constexpr std::size_t kBackBytes = std::size_t{16} << 10;

struct Offer {
  std::uint32_t magic;
  std::uint32_t offered;  // 0: no pipe, stay on TCP
  std::uint64_t ring_bytes;
  std::int64_t pid;             // the connector's process
  std::uint64_t probe_address;  // where `token` also lies in the connector's memory
  std::array<char, kNameBytes> name;
  std::array<char, kTokenBytes> token;
};

/// The acceptor's reply: 0 TCP, 1 pipe, 2 pipe and single copy. With 2 it also says where
/// the connector may prove it can write into the acceptor's memory (for copies shared by both).
struct Answer {
  std::uint32_t code;
  std::uint32_t reserved;
  std::int64_t pid;             // the acceptor's process
  std::uint64_t probe_address;  // kTokenBytes of the acceptor's memory the connector may write
};

std::array<char, kTokenBytes> random_token() {
  std::random_device entropy;
  std::array<char, kTokenBytes> token{};
  const std::string text = fmt::format("{:08x}{:08x}{:08x}{:08x}", entropy(), entropy(),
                                       entropy(), entropy());
  std::memcpy(token.data(), text.data(), kTokenBytes);
  return token;
}

}  // namespace

struct ShmPipe::Control {
  transport::shm::RingControl ring;
  alignas(transport::shm::kLineStride) std::atomic<std::uint32_t> reader_sleeping;
  alignas(transport::shm::kLineStride) std::atomic<std::uint32_t> writer_sleeping;
  alignas(transport::shm::kLineStride) std::atomic<std::uint64_t> remote_done;
  // One large message copied by both sides (copy_together): the reader publishes where from and
  // where to, then both claim pieces; high 32 bits: the message's number, low: the count.
  alignas(transport::shm::kLineStride) std::atomic<std::uint64_t> coop_claim;
  alignas(transport::shm::kLineStride) std::atomic<std::uint64_t> coop_done;
  std::atomic<std::uint64_t> coop_source;  // in the writer's memory
  std::atomic<std::uint64_t> coop_target;  // in the reader's memory
  std::atomic<std::uint64_t> coop_bytes;
  std::array<char, kTokenBytes> token;
  transport::shm::RingControl back;  // reader -> writer
  alignas(transport::shm::kLineStride) std::array<std::byte, kBackBytes> back_data;
};

namespace {

constexpr std::size_t control_bytes() {
  return transport::shm::round_up(sizeof(ShmPipe::Control), 4096);
}

}  // namespace

ShmPipe::ShmPipe(transport::shm::Segment segment, std::size_t ring_bytes, bool writer,
                 bool single_copy, int peer_pid)
    : segment_(std::move(segment)), control_(reinterpret_cast<Control*>(segment_.data())),
      single_copy_(single_copy), peer_pid_(peer_pid) {
  std::byte* data = segment_.data() + control_bytes();
  if (writer) {
    writer_ = transport::shm::RingWriter(&control_->ring, data, ring_bytes);
    back_reader_ = transport::shm::RingReader(&control_->back, control_->back_data.data(),
                                              kBackBytes);
  } else {
    reader_ = transport::shm::RingReader(&control_->ring, data, ring_bytes);
    back_writer_ = transport::shm::RingWriter(&control_->back, control_->back_data.data(),
                                              kBackBytes);
  }
}

ShmPipe::~ShmPipe() = default;

namespace {
// Pieces small enough that the other side copies one while this side copies the next.
constexpr std::size_t kPiece = std::size_t{64} << 10;

bool write_other_process(int pid, std::uint64_t address, const std::byte* src, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    iovec local{const_cast<std::byte*>(src) + done, bytes - done};
    iovec remote{reinterpret_cast<void*>(address + done), bytes - done};
    const ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

constexpr std::size_t kCoopPiece = std::size_t{256} << 10;
constexpr std::uint64_t kLow = 0xffffffffu;

bool read_other_process(int pid, std::byte* dst, std::uint64_t address, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    iovec local{dst + done, bytes - done};
    iovec remote{reinterpret_cast<void*>(address + done), bytes - done};
    const ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}
}  // namespace

std::size_t ShmPipe::write(const std::byte* src, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    const std::size_t n = writer_.write(src + done, std::min(bytes - done, kPiece));
    if (n == 0) break;
    done += n;
  }
  return done;
}

void ShmPipe::read_remote(std::byte* dst, std::uint64_t address, std::size_t bytes) const {
  if (!read_other_process(peer_pid_, dst, address, bytes)) {
    throw std::system_error(errno, std::generic_category(), "process_vm_readv()");
  }
}

void ShmPipe::copy_together(std::byte* dst, std::uint64_t address, std::size_t bytes,
                            std::uint64_t message, const std::function<void()>& wake,
                            const std::function<bool()>& alive,
                            std::chrono::steady_clock::time_point deadline) {
  const std::uint64_t pieces = (bytes + kCoopPiece - 1) / kCoopPiece;
  const std::uint64_t tag = (message & kLow) << 32;
  control_->coop_source.store(address, std::memory_order_relaxed);
  control_->coop_target.store(reinterpret_cast<std::uint64_t>(dst), std::memory_order_relaxed);
  control_->coop_bytes.store(bytes, std::memory_order_relaxed);
  control_->coop_done.store(tag, std::memory_order_relaxed);
  control_->coop_claim.store(tag, std::memory_order_release);  // publishes the three above
  wake();
  while (true) {
    std::uint64_t claim = control_->coop_claim.load(std::memory_order_acquire);
    if ((claim & kLow) >= pieces) break;
    if (!control_->coop_claim.compare_exchange_weak(claim, claim + 1)) continue;
    const std::uint64_t piece = claim & kLow;
    const std::size_t at = piece * kCoopPiece;
    read_remote(dst + at, address + at, std::min(kCoopPiece, bytes - at));
    control_->coop_done.fetch_add(1, std::memory_order_acq_rel);
  }
  // The writer may still be copying the pieces it claimed; should it die meanwhile, its
  // socket says so.
  for (unsigned round = 0;
       (control_->coop_done.load(std::memory_order_acquire) & kLow) < pieces; ++round) {
    if ((round & 1023) == 1023) {
      if (std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("the sender stopped copying its share of a message");
      }
      if (!alive()) throw std::runtime_error("the sender died while copying a message");
    }
    __builtin_ia32_pause();
  }
}

bool ShmPipe::help_copy(std::uint64_t message, const std::byte* src) {
  const std::uint64_t tag = (message & kLow) << 32;
  bool helped = false;
  while (true) {
    std::uint64_t claim = control_->coop_claim.load(std::memory_order_acquire);
    if ((claim & ~kLow) != tag) return helped;
    const std::uint64_t bytes = control_->coop_bytes.load(std::memory_order_relaxed);
    const std::uint64_t pieces = (bytes + kCoopPiece - 1) / kCoopPiece;
    if ((claim & kLow) >= pieces) return helped;
    if (!control_->coop_claim.compare_exchange_weak(claim, claim + 1)) continue;
    const std::uint64_t piece = claim & kLow;
    const std::size_t at = piece * kCoopPiece;
    const std::uint64_t target = control_->coop_target.load(std::memory_order_relaxed);
    if (!write_other_process(peer_pid_, target + at, src + at,
                             std::min<std::size_t>(kCoopPiece, bytes - at))) {
      throw std::system_error(errno, std::generic_category(), "process_vm_writev()");
    }
    control_->coop_done.fetch_add(1, std::memory_order_acq_rel);
    helped = true;
  }
}

void ShmPipe::count_remote_done() {
  control_->remote_done.fetch_add(1, std::memory_order_release);
}

std::uint64_t ShmPipe::remote_done() const {
  return control_->remote_done.load(std::memory_order_acquire);
}

std::size_t ShmPipe::read(std::byte* dst, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    const auto piece = reader_.peek(std::min(bytes - done, kPiece));
    if (piece.empty()) break;
    std::memcpy(dst + done, piece.data(), piece.size());
    reader_.consume(piece.size());
    done += piece.size();
  }
  return done;
}

std::size_t ShmPipe::write_back(const std::byte* src, std::size_t bytes) {
  return back_writer_.write(src, bytes);
}

std::size_t ShmPipe::read_back(std::byte* dst, std::size_t bytes) {
  std::size_t done = 0;
  while (done < bytes) {
    const auto piece = back_reader_.peek(bytes - done);
    if (piece.empty()) break;
    std::memcpy(dst + done, piece.data(), piece.size());
    back_reader_.consume(piece.size());
    done += piece.size();
  }
  return done;
}

void ShmPipe::set_reader_sleeping(bool sleeping) {
  control_->reader_sleeping.store(sleeping ? 1 : 0, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

void ShmPipe::set_writer_sleeping(bool sleeping) {
  control_->writer_sleeping.store(sleeping ? 1 : 0, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool ShmPipe::reader_asleep() const {
  // Pairs with the fence in set_reader_sleeping(): either the sleeper sees our progress when
  // it re-checks, or we see its flag.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return control_->reader_sleeping.load(std::memory_order_relaxed) != 0;
}

bool ShmPipe::writer_asleep() const {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return control_->writer_sleeping.load(std::memory_order_relaxed) != 0;
}

std::unique_ptr<ShmPipe> offer_pipe(const transport::Socket& socket, bool enabled,
                                    const std::string& scope, std::size_t ring_bytes,
                                    std::chrono::steady_clock::time_point deadline) {
  Offer offer{kOfferMagic, 0, ring_bytes, ::getpid(), 0, {}, random_token()};
  offer.probe_address = reinterpret_cast<std::uint64_t>(offer.token.data());
  transport::shm::Segment segment;
  transport::shm::UnlinkOnSignal guard;
  if (enabled) {
    const std::string name = transport::shm::segment_name(
        fmt::format("{}{:08x}", scope, std::random_device{}()));
    if (name.size() < kNameBytes) {
      guard = transport::shm::UnlinkOnSignal(name);
      try {
        segment = transport::shm::Segment::create(name, control_bytes() + ring_bytes);
        auto* control = new (segment.data()) ShmPipe::Control{};
        control->token = offer.token;
        std::memcpy(offer.name.data(), name.data(), name.size());
        offer.offered = 1;
      } catch (const std::system_error& e) {
        spdlog::debug("point-to-point: no shared-memory pipe ({}): {}; staying on TCP", name,
                      e.what());
      }
    }
  }
  if (!transport::write_all(socket.fd(), &offer, sizeof(offer), deadline)) {
    throw std::runtime_error("timed out offering a shared-memory pipe");
  }
  if (offer.offered == 0) return nullptr;
  Answer answer{};
  const bool answered = transport::read_all(socket.fd(), &answer, sizeof(answer), deadline);
  segment.unlink();  // mapped by both, or by nobody else: the name is done with either way
  if (!answered) throw std::runtime_error("timed out waiting for the shared-memory answer");
  if (answer.code != 1 && answer.code != 2) return nullptr;
  bool together = false;
  if (answer.code == 2) {
    // Copies shared by both sides need this process to write the receiver's memory: proven
    // by writing our token into its probe and reading it back.
    std::array<char, kTokenBytes> seen{};
    const int pid = static_cast<int>(answer.pid);
    together = answer.pid > 0 &&
               write_other_process(pid, answer.probe_address,
                                   reinterpret_cast<const std::byte*>(offer.token.data()),
                                   kTokenBytes) &&
               read_other_process(pid, reinterpret_cast<std::byte*>(seen.data()),
                                  answer.probe_address, kTokenBytes) &&
               seen == offer.token;
    const char verdict = together ? 1 : 0;
    if (!transport::write_all(socket.fd(), &verdict, 1, deadline)) {
      throw std::runtime_error("timed out confirming the shared copies");
    }
  }
  auto pipe = std::make_unique<ShmPipe>(std::move(segment), ring_bytes, /*writer=*/true,
                                        /*single_copy=*/answer.code == 2,
                                        static_cast<int>(answer.pid));
  pipe->set_copy_together(together);
  return pipe;
}

std::unique_ptr<ShmPipe> accept_pipe(const transport::Socket& socket,
                                     std::chrono::steady_clock::time_point deadline) {
  Offer offer{};
  if (!transport::read_all(socket.fd(), &offer, sizeof(offer), deadline)) {
    throw std::runtime_error("no shared-memory offer in time");
  }
  if (offer.magic != kOfferMagic) throw std::runtime_error("a malformed shared-memory offer");
  if (offer.offered == 0) return nullptr;
  const std::uint64_t ring = offer.ring_bytes;
  if (ring < 4096 || (ring & (ring - 1)) != 0 || ring > (std::uint64_t{1} << 32)) {
    throw std::runtime_error("a shared-memory offer with a bad ring size");
  }
  offer.name.back() = '\0';
  const std::string name(offer.name.data());
  std::unique_ptr<ShmPipe> pipe;
  try {
    auto segment = transport::shm::Segment::open(name, control_bytes() + ring);
    const auto* control = reinterpret_cast<const ShmPipe::Control*>(segment.data());
    if (std::memcmp(control->token.data(), offer.token.data(), kTokenBytes) == 0) {
      // Single copy only when this process can read the token where the connector keeps it
      // (same PID namespace, ptrace permitted): proven, not assumed.
      std::array<char, kTokenBytes> seen{};
      const bool readable =
          offer.pid > 0 &&
          read_other_process(static_cast<int>(offer.pid), reinterpret_cast<std::byte*>(seen.data()),
                             offer.probe_address, kTokenBytes) &&
          seen == offer.token;
      pipe = std::make_unique<ShmPipe>(std::move(segment), ring, /*writer=*/false, readable,
                                       static_cast<int>(offer.pid));
    }
  } catch (const std::system_error& e) {
    spdlog::debug("point-to-point: cannot map the peer's pipe {}: {}; staying on TCP", name,
                  e.what());
  }
  std::array<char, kTokenBytes> probe{};  // the connector writes its token here (code 2)
  const Answer answer{!pipe ? 0u : pipe->single_copy() ? 2u : 1u, 0, ::getpid(),
                      reinterpret_cast<std::uint64_t>(probe.data())};
  if (!transport::write_all(socket.fd(), &answer, sizeof(answer), deadline)) {
    throw std::runtime_error("timed out answering the shared-memory offer");
  }
  if (answer.code == 2) {
    char verdict = 0;
    if (!transport::read_all(socket.fd(), &verdict, 1, deadline)) {
      throw std::runtime_error("no verdict on shared copies in time");
    }
    pipe->set_copy_together(verdict == 1 && probe == offer.token);
  }
  return pipe;
}

}  // namespace ringfuse::p2p
