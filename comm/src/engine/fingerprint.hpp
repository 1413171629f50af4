// What every rank's i-th collective must agree on: operation, name, dtype, shape, operator,
// root, scaling and device (host or CUDA memory: the engine packs and runs them differently).
// Rendered as `'name' f32[1024,512] sum` (`... on cuda`) in mismatch messages.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/wire.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

// alltoallv / reducescatterv: the uneven alltoall and reducescatter (appended: the wire keeps
// the older values).
enum class OpType : std::uint8_t {
  allreduce, allgather, broadcast, alltoall, reducescatter, barrier, alltoallv, reducescatterv
};

std::string_view to_string(OpType op);

struct Fingerprint {
  OpType op_type = OpType::allreduce;
  DataType dtype = DataType::f32;
  ReduceOp op = ReduceOp::sum;
  Compression compression = Compression::none;
  std::int32_t root = -1;
  Device device = Device::cpu;
  double prescale = 1.0;
  double postscale = 1.0;
  std::vector<std::int64_t> shape;  // allgather, alltoallv: dimension 0 may differ by rank
  std::string name;
  std::vector<std::int64_t> splits;  // alltoallv: the rows this rank sends to each rank

  std::size_t numel() const;
  std::size_t bytes() const { return numel() * element_size(dtype); }
  /// Equality of what must match; allgather ignores dimension 0.
  bool matches(const Fingerprint& other) const;
  /// `f32[1024,512] sum`, with the name in front when `with_name`.
  std::string describe(bool with_name) const;
  /// Only all-reduces, broadcasts and the like with fixed shapes go in the response cache.
  bool cacheable() const { return !rows_differ(); }
  /// Dimension 0 may differ between ranks, which the coordinator collects (never cached).
  bool rows_differ() const {
    return op_type == OpType::allgather || op_type == OpType::alltoallv;
  }

  void encode(ByteWriter& out) const;
  static Fingerprint decode(ByteReader& in);
  /// A hash of every field matches() compares (the response cache's index).
  std::size_t hash() const;

  /// Field by field, the containers' memory included (Request's swap: request.hpp).
  friend void swap(Fingerprint& a, Fingerprint& b) noexcept {
    using std::swap;
    swap(a.op_type, b.op_type);
    swap(a.dtype, b.dtype);
    swap(a.op, b.op);
    swap(a.compression, b.compression);
    swap(a.root, b.root);
    swap(a.device, b.device);
    swap(a.prescale, b.prescale);
    swap(a.postscale, b.postscale);
    swap(a.shape, b.shape);
    swap(a.name, b.name);
    swap(a.splits, b.splits);
  }
};
// A field added to Fingerprint must be swapped above, and written where a recycled request is
// filled (EngineImpl::allreduce_view), too; then update this size.
#if defined(__GLIBCXX__) && defined(__x86_64__)
static_assert(sizeof(Fingerprint) == 112);
#endif

/// Starts loading the memory of `fp`'s name and shape into the caches without waiting: the
/// negotiation compares a step's fingerprints one after the other, and after a training
/// step's compute their heap memory is no longer cached, so each comparison would otherwise
/// wait for its own misses (issue 18).
inline void prefetch_fingerprint(const Fingerprint& fp) {
  __builtin_prefetch(fp.name.data());
  __builtin_prefetch(fp.shape.data());
}

}  // namespace ringfuse::engine
