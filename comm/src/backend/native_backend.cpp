#include "backend/native_backend.hpp"

#include <array>
#include <charconv>
#include <cstring>
#include <numeric>
#include <vector>

#include <fmt/format.h>

#include "algo/algorithms.hpp"
#include "core/errors.hpp"
#include "reduce/reduce.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::backend {
namespace {

// Below this, the window's three barriers cost more than the rings' few exchanges
// (perf/RESULTS.md, "Fusion buffer in shared memory").
constexpr std::size_t kWindowMinBytes = std::size_t{256} << 10;

std::byte* bytes_of(void* data) { return static_cast<std::byte*>(data); }
const std::byte* bytes_of(const void* data) { return static_cast<const std::byte*>(data); }

}  // namespace

NativeBackend::NativeBackend(std::unique_ptr<transport::Transport> transport,
                             Algorithm default_algorithm)
    : transport_(std::move(transport)),
      default_algorithm_(default_algorithm),
      rank_(transport_->rank()),
      size_(transport_->size()) {}

void NativeBackend::begin_allgatherv(DataType type, std::size_t count) {
  // The same words as begin("allgatherv {}[{}]", ...).
  std::array<char, 24> digits{};
  std::array<char, 24> sequence{};
  const auto count_end = std::to_chars(digits.data(), digits.data() + digits.size(), count).ptr;
  const auto sequence_end =
      std::to_chars(sequence.data(), sequence.data() + sequence.size(), ++sequence_).ptr;
  std::string label;
  label.reserve(64);
  label += "allgatherv ";
  label += to_string(type);
  label += '[';
  label.append(digits.data(), count_end);
  label += "] (collective #";
  label.append(sequence.data(), sequence_end);
  label += ')';
  transport_->set_operation(std::move(label));
}

void NativeBackend::invalid(const std::string& label, const std::string& what) const {
  throw core::rank_error(ErrorKind::invalid_argument, rank_, "{}: {}", label, what);
}

bool NativeBackend::runs_in_window(const void* data, std::size_t bytes, Algorithm algo) const {
  if (algo == Algorithm::automatic) algo = default_algorithm_;
  const auto* window = transport_->shared_window();
  if (window == nullptr || algo != Algorithm::automatic || data == nullptr ||
      bytes < kWindowMinBytes) {
    return false;
  }
  const auto* at = static_cast<const std::byte*>(data);
  return at >= window->local() && at + bytes <= window->local() + window->capacity();
}

bool NativeBackend::runs_in_peer_memory(std::size_t bytes, std::size_t count,
                                       Algorithm algo) const {
  const auto* memory = transport_->peer_memory();
  // The threshold is the same on every rank (the transport agreed on it), so all pick alike.
  return memory != nullptr && algo == Algorithm::automatic &&
         count >= static_cast<std::size_t>(size_) && bytes >= memory->min_bytes();
}

Executed NativeBackend::allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                                  Algorithm algo) {
  if (algo == Algorithm::automatic) algo = default_algorithm_;
  const std::size_t bytes = count * element_size(type);
  if (hierarchy_ && count > 0 &&
      (hierarchy_->min_bytes == 0 || (algo == Algorithm::automatic && bytes >= hierarchy_->min_bytes))) {
    auto label = begin("allreduce {}[{}] {} (hierarchical: {} on the host, {} across hosts)",
                       to_string(type), count, to_string(op), hierarchy_->local->size(),
                       hierarchy_->cross->size());
    if (data == nullptr) invalid(label, "data is null");
    hierarchy_->local->set_operation(label + " [within the host]");
    hierarchy_->cross->set_operation(label + " [across hosts]");
    algo::hierarchical_allreduce(*hierarchy_->local, *hierarchy_->cross, workspace_,
                                 algo::ReduceBuffer{bytes_of(data), count, type, op});
    return Executed{"hierarchical", bytes, std::move(label)};
  }
  if (runs_in_window(data, bytes, algo)) {
    // A buffer the caller placed in the shared window (the engine's fusion buffer) is read
    // by the peers where it is. Every rank's buffer is at the same offset: they all pack the
    // same fused response into windows of the same size.
    auto* window = transport_->shared_window();
    auto label =
        begin("allreduce {}[{}] {} (shared window)", to_string(type), count, to_string(op));
    algo::window_allreduce(*window, static_cast<std::size_t>(bytes_of(data) - window->local()),
                           algo::ReduceBuffer{bytes_of(data), count, type, op});
    return Executed{"shared-window", bytes, std::move(label)};
  }
  if (runs_in_peer_memory(bytes, count, algo)) {
    auto label = begin("allreduce {}[{}] {} (cross-memory)", to_string(type), count,
                       to_string(op));
    if (data == nullptr) invalid(label, "data is null");
    algo::cross_memory_allreduce(*transport_->peer_memory(), workspace_,
                                 algo::ReduceBuffer{bytes_of(data), count, type, op});
    return Executed{"cross-memory", bytes, std::move(label)};
  }
  if (algo == Algorithm::automatic) algo = algo::choose_allreduce(bytes, count, size_);
  auto label =
      begin("allreduce {}[{}] {} ({})", to_string(type), count, to_string(op), to_string(algo));
  if (count > 0 && data == nullptr) invalid(label, "data is null");
  if (size_ > 1 && count > 0) {
    algo::allreduce(algo, *transport_, workspace_,
                    algo::ReduceBuffer{bytes_of(data), count, type, op});
  }
  return Executed{std::string(to_string(algo)), bytes, std::move(label)};
}

bool NativeBackend::takes_pieces(std::size_t count, DataType type) const {
  if (hierarchy_ || default_algorithm_ != Algorithm::automatic || !transport_->copies_pieces()) {
    return false;
  }
  // In a world whose size is not a power of two, halving-doubling folds the extra ranks in
  // with one more exchange each way: more bytes than the ring for large groups, more steps
  // than the tree for small ones, so only the sizes it is chosen for anyway go in place.
  const bool power_of_two = (size_ & (size_ - 1)) == 0;
  return power_of_two ||
         algo::choose_allreduce(count * element_size(type), count, size_) == Algorithm::rhd;
}

Executed NativeBackend::allreduce_pieces(transport::Pieces pieces, std::size_t count,
                                         DataType type, ReduceOp op) {
  auto label = begin("allreduce {}[{}] {} (rhd over {} tensors in place)", to_string(type), count,
                     to_string(op), pieces.size());
  if (size_ > 1 && count > 0) {
    algo::rhd_allreduce(*transport_, workspace_, algo::ScatteredBuffer(pieces, type, op));
  }
  return Executed{std::string(to_string(Algorithm::rhd)), count * element_size(type),
                  std::move(label)};
}

void NativeBackend::broadcast(void* data, std::size_t count, DataType type, int root) {
  const auto label = begin("broadcast {}[{}] root {}", to_string(type), count, root);
  if (root < 0 || root >= size_) {
    invalid(label, fmt::format("root {} is not a rank of this world of {}", root, size_));
  }
  if (count > 0 && data == nullptr) invalid(label, "data is null");
  algo::broadcast(*transport_, bytes_of(data), count * element_size(type), root);
}

void NativeBackend::allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                               DataType type) {
  if (counts.size() != static_cast<std::size_t>(size_)) {
    invalid(begin("allgatherv {}[0]", to_string(type)),
            fmt::format("{} counts given for a world of {}", counts.size(), size_));
  }
  begin_allgatherv(type, counts[rank_]);
  const std::size_t element_bytes = element_size(type);
  // The blocks in a vector kept from call to call: the small all-gathers (the c10d group's
  // agreement frames) then allocate nothing here.
  algo::blocks_from_counts(counts, blocks_);
  const auto& blocks = blocks_;
  const auto& own = blocks[rank_];
  // A caller that placed its block where it belongs in `recv` already (in place) copies nothing.
  std::byte* own_place = bytes_of(recv) + own.offset * element_bytes;
  if (own.count > 0 && bytes_of(send) != own_place) {
    std::memmove(own_place, send, own.count * element_bytes);
  }
  if (size_ > 1) algo::ring_allgather(*transport_, bytes_of(recv), element_bytes, blocks, -1);
}

void NativeBackend::reducescatter(const void* send, void* recv, std::size_t recv_count,
                                  DataType type, ReduceOp op) {
  begin("reducescatter {}[{}x{}] {}", to_string(type), size_, recv_count, to_string(op));
  const std::size_t element_bytes = element_size(type);
  const std::size_t total = recv_count * static_cast<std::size_t>(size_);
  // The ring reduces in place, so it works on a copy and the caller's input stays intact.
  std::byte* work = workspace_.get(algo::Workspace::kWork, total * element_bytes);
  if (total > 0) std::memcpy(work, send, total * element_bytes);
  const auto blocks = algo::even_blocks(total, size_);
  if (size_ > 1) {
    algo::ring_reduce_scatter(*transport_, workspace_, algo::ReduceBuffer{work, total, type, op},
                              blocks, -1);
  }
  std::byte* own = work + blocks[rank_].offset * element_bytes;
  if (op == ReduceOp::avg) {
    reduce::divide(own, recv_count, type, static_cast<std::size_t>(size_));
  }
  if (recv_count > 0) std::memcpy(recv, own, recv_count * element_bytes);
}

void NativeBackend::alltoallv(const void* send, std::span<const std::size_t> send_counts,
                              void* recv, std::span<const std::size_t> recv_counts,
                              DataType type) {
  const auto label = begin("alltoallv {}", to_string(type));
  if (send_counts.size() != static_cast<std::size_t>(size_) ||
      recv_counts.size() != static_cast<std::size_t>(size_)) {
    invalid(label, fmt::format("{} send counts and {} receive counts given for a world of {}",
                               send_counts.size(), recv_counts.size(), size_));
  }
  algo::alltoallv(*transport_, bytes_of(send), algo::blocks_from_counts(send_counts),
                  bytes_of(recv), algo::blocks_from_counts(recv_counts), element_size(type));
}

void NativeBackend::barrier() {
  begin("barrier");
  if (size_ > 1) algo::barrier(*transport_);
}

}  // namespace ringfuse::backend
