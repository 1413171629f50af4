// A whole-collective executor (DESIGN.md §2: native | mpi | nccl). The Context keeps a list of
// backends in priority order and runs each operation on the first whose enabled(op) is true
// (Horovod's OperationManager idea), so optional dependencies are one entry in a list rather
// than #if blocks around every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "ringfuse/context.hpp"

namespace ringfuse::backend {

enum class OpKind : std::uint8_t { allreduce, broadcast, allgatherv, reducescatter, alltoallv,
                                   barrier };

inline std::string_view to_string(OpKind kind) {
  constexpr std::string_view names[] = {"allreduce", "broadcast", "allgatherv", "reducescatter",
                                        "alltoallv", "barrier"};
  return names[static_cast<int>(kind)];
}

/// What enabled() may look at: the operation, its element type and reduction, and where the
/// caller's buffers live.
struct OpDesc {
  OpKind kind = OpKind::barrier;
  DataType type = DataType::f32;
  ReduceOp op = ReduceOp::sum;
  Device device = Device::cpu;
};

/// What a backend ran for one all-reduce, decided once by the backend itself: the timeline and
/// the launcher's /metrics report this instead of guessing the backend's choice again.
struct Executed {
  /// As the timeline names it: "ring", "tree", "rhd", "hierarchical", "shared-window" (native),
  /// "mpi", "nccl".
  std::string algorithm;
  std::size_t bytes = 0;  // the bytes reduced
  std::string label;      // the backend's label for the operation, as its errors quote it
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;
  virtual bool enabled(const OpDesc& op) const = 0;
  /// The number of the collective running, or last run, on this backend ("collective #N" in
  /// its labels); 0 before the first.
  virtual std::uint64_t sequence() const = 0;

  /// `algo` is a request (Algorithm::automatic: the backend's own choice); the result says
  /// what ran.
  virtual Executed allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                             Algorithm algo) = 0;
  virtual void broadcast(void* data, std::size_t count, DataType type, int root) = 0;
  virtual void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                          DataType type) = 0;
  virtual void reducescatter(const void* send, void* recv, std::size_t recv_count,
                             DataType type, ReduceOp op) = 0;
  virtual void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                         std::span<const std::size_t> recv_counts, DataType type) = 0;
  virtual void barrier() = 0;
};

}  // namespace ringfuse::backend
