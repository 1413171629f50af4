// The native data plane: every collective as one of our algorithms over a Transport.
// Validates arguments, labels the operation for error messages and picks the algorithm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "algo/partition.hpp"
#include "algo/workspace.hpp"
#include "backend/backend.hpp"
#include "ringfuse/context.hpp"
#include "transport/transport.hpp"

namespace ringfuse::backend {

class NativeBackend final : public Backend {
 public:
  NativeBackend(std::unique_ptr<transport::Transport> transport, Algorithm default_algorithm);

  /// A second level of connections, for all-reduces over ranks on several hosts
  /// (algo::hierarchical_allreduce).
  struct Hierarchy {
    std::unique_ptr<transport::Transport> local;  // the ranks of this host
    std::unique_ptr<transport::Transport> cross;  // this local rank on every host
    /// All-reduces of at least this many bytes go hierarchical when no algorithm is forced;
    /// 0 (RINGFUSE_HIERARCHICAL=1): every all-reduce, whatever the algorithm asked for.
    std::size_t min_bytes = 0;
  };
  void set_hierarchy(Hierarchy hierarchy) { hierarchy_ = std::move(hierarchy); }

  std::string_view name() const override { return "native"; }
  std::uint64_t sequence() const override { return sequence_; }
  /// Every collective on host memory (device buffers need the NCCL backend).
  bool enabled(const OpDesc& op) const override { return op.device == Device::cpu; }

  Executed allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                     Algorithm algo) override;
  /// Whether allreduce_pieces() takes an all-reduce of `count` elements of `type`: only over a
  /// transport that copies pieces itself (shared memory; TCP would gather them, copying more
  /// than packing does), not with a hierarchy or an algorithm forced (RINGFUSE_ALGO), nor in
  /// a world whose size is not a
  /// power of two where the ring or the tree would take the packed buffer (the fold costs an
  /// exchange more). Every rank decides alike from the same count.
  bool takes_pieces(std::size_t count, DataType type) const;
  /// All-reduce of elements that lie in several places (a fused group's tensors, each piece
  /// whole elements), in place, without packing them into one buffer: recursive
  /// halving-doubling over the pieces. Only where takes_pieces() says so.
  Executed allreduce_pieces(transport::Pieces pieces, std::size_t count, DataType type,
                            ReduceOp op);
  void broadcast(void* data, std::size_t count, DataType type, int root) override;
  void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                  DataType type) override;
  void reducescatter(const void* send, void* recv, std::size_t recv_count, DataType type,
                     ReduceOp op) override;
  void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                 std::span<const std::size_t> recv_counts, DataType type) override;
  void barrier() override;

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// The transport's shared window, or null.
  transport::SharedWindow* shared_window() { return transport_->shared_window(); }

 private:
  /// Starts operation number `sequence_` and returns its label for messages: the description
  /// `what` formats, then " (collective #N)". Formatted once, in one buffer: every collective
  /// pays for it, and a small one's whole run is a few microseconds (perf/RESULTS.md, issue 21).
  template <class... Args>
  std::string begin(fmt::format_string<Args...> what, Args&&... args) {
    fmt::memory_buffer text;
    fmt::format_to(fmt::appender(text), what, std::forward<Args>(args)...);
    fmt::format_to(fmt::appender(text), " (collective #{})", ++sequence_);
    std::string label(text.data(), text.size());
    transport_->set_operation(label);
    return label;
  }
  /// begin() of an allgatherv of `count` elements here, whose label only the transport needs
  /// from here on: written without fmt's parsing and handed over without a copy, since the
  /// c10d group's agreement check runs one before each of its collectives (perf/RESULTS.md,
  /// issue 21, seventh session).
  void begin_allgatherv(DataType type, std::size_t count);
  [[noreturn]] void invalid(const std::string& label, const std::string& what) const;
  /// Whether allreduce(data, ...) of `bytes` with `algo` runs as algo::window_allreduce: the
  /// algorithm is automatic, the buffer lies inside the shared window, and it is large enough.
  bool runs_in_window(const void* data, std::size_t bytes, Algorithm algo) const;
  bool runs_in_peer_memory(std::size_t bytes, std::size_t count, Algorithm algo) const;

  std::unique_ptr<transport::Transport> transport_;
  std::optional<Hierarchy> hierarchy_;
  Algorithm default_algorithm_;
  algo::Workspace workspace_;
  std::vector<algo::Block> blocks_;  // allgatherv's, reused
  int rank_;
  int size_;
  std::uint64_t sequence_ = 0;
};

}  // namespace ringfuse::backend
