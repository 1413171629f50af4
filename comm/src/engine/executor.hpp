// The execution half of the engine (Horovod's OperationManager): for each group the fusion
// plan made of a negotiated response, pack the members into the fusion buffer (or run one
// tensor in place), call the backend for the tensors' device, unpack, and complete the Works.
// A joined rank takes part with the operator's identity in scratch memory. The backends
// report what they ran, and that is what the timeline and the launcher's /metrics show.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "memory/memory_space.hpp"
#include "backend/native_backend.hpp"
#include "core/progress_record.hpp"
#include "engine/fusion_plan.hpp"
#include "memory/host_memory_space.hpp"
#include "engine/messages.hpp"
#include "engine/outstanding.hpp"
#include "engine/timeline.hpp"

namespace ringfuse::engine {

/// What the executor runs on. The device parts are null without a usable CUDA device, and
/// `device_unavailable` then says why.
struct ExecutionResources {
  std::unique_ptr<backend::NativeBackend> data;
  std::unique_ptr<memory::MemorySpace> device_space;
  std::unique_ptr<backend::Backend> device_data;  // may refer to `data`
  std::string device_unavailable;
  core::ProgressPublisher* progress = nullptr;  // the Context's, for /metrics; may be null
  int reported_rank = -1;  // the global rank errors name (-1: the engine's rank is global)
};

class Executor {
 public:
  /// `outstanding` and `timeline` belong to the engine and outlive the executor.
  Executor(int rank, int size, std::size_t fusion_threshold, ExecutionResources resources,
           Outstanding& outstanding, TimelineTrack& timeline);

  /// Runs one group of `response.ready` and completes its members' Works.
  void execute(const CycleResponse& response, const FusionGroup& group);

  /// Why this rank's engine cannot take `tensor` on its device, or nullopt when it can.
  std::optional<std::string> device_problem(const TensorView& tensor) const;

  std::uint64_t collectives() const { return collectives_.load(); }
  std::uint64_t fused_tensors() const { return fused_tensors_.load(); }

 private:
  void run_allreduce(const CycleResponse& response, const FusionGroup& group);
  void run_single(const ReadyEntry& entry, Request* local);
  /// Sets pieces_ to the members' `data` as they lie; false when two of them overlap (one
  /// tensor enqueued twice), which only the fusion buffer reduces once per member.
  bool place_pieces(const std::vector<void*>& data, const std::vector<std::size_t>& counts,
                    std::size_t element);
  /// Calls `local`'s output allocator for `shape` (of `bytes`); on failure, records the error
  /// for the Work and returns null (the caller takes part with scratch, as the others wait).
  std::byte* allocate_output(const Fingerprint& fp, Request& local,
                             const std::vector<std::int64_t>& shape, std::size_t bytes,
                             std::optional<Error>& failure);
  void run_alltoallv(const ReadyEntry& entry, Request& local);
  /// Several allgathers in one allgatherv: each rank's rows of every member, packed.
  void run_allgathers_fused(const CycleResponse& response, const FusionGroup& group);
  /// Several reducescatters in one: rank r's block of every member, packed, r after r.
  void run_reducescatters_fused(const CycleResponse& response, const FusionGroup& group);
  void run_reducescatterv(const ReadyEntry& entry, Request& local);
  /// Where collectives on `device` memory are packed, and the backend that runs them; a rank
  /// without a CUDA device fails here when the others agreed on a CUDA collective (it joined).
  memory::MemorySpace& memory_for(Device device);
  backend::Backend& backend_for(Device device);
  /// The all-reduce is over: on the timeline and in the launcher's progress record.
  void allreduce_done(const std::string& label, std::size_t tensors, DataType wire,
                      const backend::Executed& executed, Clock::time_point start);

  int rank_;
  int reported_rank_;  // in errors
  int size_;
  std::unique_ptr<backend::NativeBackend> data_;
  std::unique_ptr<memory::MemorySpace> device_space_;  // null without a CUDA device
  std::unique_ptr<backend::Backend> device_data_;       // may use data_: declared after it
  std::string device_unavailable_;
  core::ProgressPublisher* progress_;  // may be null
  Outstanding& outstanding_;
  TimelineTrack& timeline_;
  memory::HostMemorySpace host_memory_;  // fusion buffer and a joined rank's stand-ins, in host memory
  std::vector<memory::CopySegment> segments_;  // reused by every fused all-reduce
  std::vector<transport::Piece> pieces_;        // the same, for one run in place
  std::vector<void*> member_data_;              // a fused all-reduce's members' data, in order
  std::vector<std::size_t> member_counts_;      // and their element counts
  std::vector<std::pair<std::uintptr_t, std::uintptr_t>> runs_;  // overlap check's scratch
  std::vector<std::uint64_t> completed_;        // a fused all-reduce's members' numbers
  std::atomic<std::uint64_t> collectives_{0};
  std::atomic<std::uint64_t> fused_tensors_{0};
};

}  // namespace ringfuse::engine
