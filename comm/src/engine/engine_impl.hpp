// The engine: callers' threads validate and enqueue; one background thread runs cycles of
// take ready requests -> negotiate (coordinator on rank 0) -> plan fusion -> run collectives
// on the engine's own data connections -> complete Works. Any failure completes every pending
// Work with that error; destruction negotiates a shutdown and joins the thread.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "backend/memory_space.hpp"
#include "backend/native_backend.hpp"
#include "core/progress_record.hpp"
#include "engine/control_channel.hpp"
#include "engine/coordinator.hpp"
#include "engine/fusion_plan.hpp"
#include "engine/host_memory_space.hpp"
#include "engine/request_queue.hpp"
#include "engine/response_cache.hpp"
#include "engine/stall_inspector.hpp"
#include "engine/timeline.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

struct EngineResources {
  int rank = 0;
  int size = 1;
  EngineConfig config;
  Algorithm algorithm = Algorithm::automatic;  // the Context's default, for timeline labels
  std::unique_ptr<transport::Transport> control;  // short no-progress timeout (the tick)
  std::unique_ptr<backend::NativeBackend> data;
  // CUDA tensors: the packing space on this rank's device, and a backend for device buffers
  // on the engine's own connections (its own NCCL communicator, or staging onto `data`, which
  // it may refer to). Both null without a usable device, and device_unavailable says why.
  std::unique_ptr<backend::MemorySpace> device_space;
  std::unique_ptr<backend::Backend> device_data;
  std::string device_unavailable;
  core::ProgressPublisher* progress = nullptr;  // the Context's, for the launcher's /metrics
};

/// How long one control-channel receive waits before the engine looks around.
inline constexpr std::chrono::milliseconds kControlTick{100};

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(EngineResources resources);
  ~EngineImpl() override;

  Work allreduce(std::string name, TensorView tensor, AllreduceOptions options) override;
  Work grouped_allreduce(std::string name, std::vector<TensorView> tensors,
                         AllreduceOptions options) override;
  Work allgather(std::string name, TensorView input, OutputAllocator allocate) override;
  Work broadcast(std::string name, TensorView tensor, int root) override;
  Work alltoall(std::string name, TensorView input, TensorView output) override;
  Work reducescatter(std::string name, TensorView input, TensorView output,
                     ReduceOp op) override;
  Work barrier(std::string name) override;
  Work join() override;
  void flush() override { queue_.flush(); }
  EngineStats stats() const override;
  const EngineConfig& config() const override { return config_; }

 private:
  Work submit(std::vector<Request> requests);
  Work submit_one(Request request);
  /// A request over `tensor`'s memory, fingerprinted by op type, dtype, shape and name.
  static Request tensor_request(OpType type, std::string name, const TensorView& tensor);
  /// A checked all-reduce request with `options` in its fingerprint.
  Request allreduce_request(std::string name, const TensorView& tensor,
                            const AllreduceOptions& options) const;
  void check_tensor(const std::string& name, const TensorView& tensor) const;

  void run();
  CycleMessage announce(std::vector<Request> taken, bool shutdown);
  /// After a cycle answered the short way: moves the released collectives from held_ into
  /// response.ready, as the coordinator would have listed them.
  void release_held(CycleResponse& response);
  CycleResponse negotiate(CycleMessage message);
  CycleResponse coordinate(CycleMessage message);
  void apply(const CycleResponse& response);
  void execute(const CycleResponse& response, const FusionGroup& group);
  void run_allreduce(const CycleResponse& response, const FusionGroup& group);
  void run_single(const ReadyEntry& entry, Request* local);
  void complete(std::uint64_t seq, const Error* error);
  void fail_everything(const Error& error);
  /// Where collectives on `device` memory are packed, and the backend that runs them; a rank
  /// without a CUDA device fails here when the others agreed on a CUDA collective (it joined).
  backend::MemorySpace& memory_for(Device device);
  backend::Backend& backend_for(Device device);

  int rank_;
  int size_;
  EngineConfig config_;
  Algorithm algorithm_;
  ControlChannel control_;
  std::unique_ptr<backend::NativeBackend> data_;
  std::unique_ptr<backend::MemorySpace> device_space_;  // null without a CUDA device
  std::unique_ptr<backend::Backend> device_data_;       // may use data_: declared after it
  std::string device_unavailable_;
  core::ProgressPublisher* progress_;  // may be null
  RequestQueue queue_;
  ResponseCache cache_;
  Coordinator coordinator_;
  StallInspector stall_;
  HostMemorySpace host_memory_;  // fusion buffer and a joined rank's stand-ins, in host memory
  std::unique_ptr<Timeline> timeline_;
  std::vector<backend::CopySegment> segments_;  // reused by every fused all-reduce

  // Engine thread only.
  std::map<std::uint64_t, Request> outstanding_;
  // Collectives in outstanding_ that are not yet in the coordinator's table, in sequence
  // order: sent by cache index each cycle until released (messages.hpp); with the indices the
  // last message carried.
  std::deque<std::uint64_t> held_;
  std::vector<std::uint32_t> held_indices_;
  std::optional<Request> join_request_;
  bool world_busy_ = false;
  std::chrono::microseconds idle_interval_;
  Clock::time_point stop_requested_{};

  std::atomic<bool> joined_{false};
  mutable std::mutex state_mutex_;
  std::optional<Error> failure_;  // why the engine stopped
  EngineStats stats_;
  std::thread thread_;
};

}  // namespace ringfuse::engine
