// The buffers one size is measured on, shared by every implementation in the run (ours and the
// peers read and write the same memory), with deterministic inputs and a result check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "collective.hpp"
#include "device_memory.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse::perf {

/// Page-aligned bytes, touched once at allocation so that no implementation pays first-touch
/// page faults on our buffers inside its timed loop.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(std::size_t bytes);
  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const;
  };
  std::unique_ptr<std::byte, Free> data_;
  std::size_t size_ = 0;
};

struct CaseSpec {
  Collective collective = Collective::allreduce;
  DataType type = DataType::f32;
  ReduceOp op = ReduceOp::sum;
  int root = 0;
  int rank = 0;
  int size = 1;
  Layout layout;
  Device device = Device::cpu;  // --device: where the measured buffers live
};

class Buffers {
 public:
  explicit Buffers(const CaseSpec& spec);

  /// What an implementation passes to the collective: GPU memory with --device cuda (the host
  /// buffers then only build the inputs and check the results). For in-place collectives
  /// (allreduce, broadcast) `output()` is the data buffer and `input()` its pristine copy.
  const void* input() const { return on_device() ? device_input_.data() : input_.data(); }
  void* output() { return on_device() ? device_output_.data() : output_.data(); }

  /// Before each iteration of an in-place collective: the previous result would otherwise be
  /// the next input (sums grow, and a broadcast would already be correct).
  void restore();
  /// Before each implementation: so a result left by the previous one cannot pass the check.
  void poison();
  /// Elements of this rank's output that differ from the reference (tolerance for floats);
  /// a GPU output is copied back first.
  std::uint64_t count_wrong();

 private:
  bool on_device() const { return spec_.device == Device::cuda; }

  CaseSpec spec_;
  AlignedBytes input_;
  AlignedBytes output_;
  DeviceBytes device_input_;
  DeviceBytes device_output_;
};

}  // namespace ringfuse::perf
