// The engine: callers' threads validate and enqueue; one background thread runs cycles of
// take ready requests -> negotiate (negotiator.hpp: coordinator on rank 0) -> plan fusion ->
// execute on the engine's own data connections (executor.hpp) -> complete Works. Any failure
// completes every pending Work with that error; destruction negotiates a shutdown and joins
// the thread.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "memory/memory_space.hpp"
#include "backend/native_backend.hpp"
#include "core/progress_record.hpp"
#include "engine/executor.hpp"
#include "engine/negotiator.hpp"
#include "engine/outstanding.hpp"
#include "engine/p2p_worker.hpp"
#include "engine/request_queue.hpp"
#include "engine/timeline.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

struct EngineResources {
  int rank = 0;
  int size = 1;
  EngineConfig config;
  std::unique_ptr<transport::Transport> control;  // polled with wait_readable (control_channel.hpp)
  std::unique_ptr<backend::NativeBackend> data;
  // CUDA tensors: the packing space on this rank's device, and a backend for device buffers
  // on the engine's own connections (its own NCCL communicator, or staging onto `data`, which
  // it may refer to). Both null without a usable device, and device_unavailable says why.
  std::unique_ptr<memory::MemorySpace> device_space;
  std::unique_ptr<backend::Backend> device_data;
  std::string device_unavailable;
  core::ProgressPublisher* progress = nullptr;  // the Context's, for the launcher's /metrics
  // An engine over a child Context (a process set): the global rank of each of its ranks and
  // the group's label, which its messages name. Empty for a world.
  std::vector<int> global_ranks;
  std::string label;
  std::unique_ptr<p2p::Messenger> p2p;  // send/recv's own connections (null: refused)
  // The rank's timeline, shared by the engines of a Context and of every child made from it
  // (null: the engine makes one of its own), and this engine's process row in it: empty for
  // a Context's own engine (the global set, pid = rank), else the row's name, "process set 1
  // (global ranks 0,2)" (timeline.hpp).
  std::shared_ptr<Timeline> timeline;
  std::string timeline_process;
};

/// The public Engine: callers' threads validate and enqueue here; the engine thread's loop
/// takes ready requests, has the Negotiator agree on them with every rank, and hands what was
/// agreed to the Executor.
class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(EngineResources resources);
  ~EngineImpl() override;

  Work allreduce(std::string name, TensorView tensor, AllreduceOptions options) override;
  Work allreduce_view(std::string_view name, const TensorView& tensor,
                      AllreduceOptions options) override;
  Work grouped_allreduce(std::string name, std::vector<TensorView> tensors,
                         AllreduceOptions options) override;
  Work allgather(std::string name, TensorView input, OutputAllocator allocate) override;
  Work broadcast(std::string name, TensorView tensor, int root) override;
  Work alltoall(std::string name, TensorView input, TensorView output) override;
  Work alltoall(std::string name, TensorView input, std::vector<std::int64_t> splits,
                OutputAllocator allocate) override;
  Work reducescatter(std::string name, TensorView input, TensorView output,
                     ReduceOp op) override;
  Work reducescatter(std::string name, TensorView input, OutputAllocator allocate,
                     ReduceOp op) override;
  Work grouped_allgather(std::string name, std::vector<TensorView> inputs,
                         GroupedOutputAllocator allocate) override;
  Work grouped_reducescatter(std::string name, std::vector<TensorView> inputs,
                             std::vector<TensorView> outputs, ReduceOp op) override;
  Work barrier(std::string name) override;
  Work join() override;
  Work send(TensorView tensor, int peer, int tag) override;
  Work recv(TensorView tensor, int peer, int tag) override;
  void hold() override { queue_.hold(); }
  void flush() override { queue_.flush(); }
  void start_timeline(const std::string& path, bool mark_cycles) override;
  void stop_timeline() override { timeline_.timeline().stop(); }
  EngineStats stats() const override;
  const EngineConfig& config() const override { return config_; }

 private:
  // Callers' side: validation and enqueueing.
  Work submit(std::vector<Request> requests);
  /// submit() without building a vector (one allocation less per enqueued tensor).
  Work submit(std::span<Request> requests);
  Work submit_one(Request request);
  /// Name mode: claims the requests' names until their Work completes, or refuses them when
  /// one is pending already (or appears twice among them).
  void claim_names(std::span<const Request> requests, WorkState& work);
  void release_names(const std::vector<std::string>& names);
  /// A request over `tensor`'s memory, fingerprinted by op type, dtype, shape and name.
  static Request tensor_request(OpType type, std::string name, TensorView tensor);
  /// A checked all-reduce request with `options` in its fingerprint.
  Request allreduce_request(std::string name, TensorView tensor,
                            const AllreduceOptions& options) const;
  /// Refuses an all-reduce of `tensor` with `options` that no rank could run.
  void check_allreduce(std::string_view name, const TensorView& tensor,
                       const AllreduceOptions& options) const;
  /// Sets what an all-reduce with `options` adds to a request of tensor_request()'s.
  static void set_allreduce_options(Request& request, const AllreduceOptions& options);
  void check_tensor(std::string_view name, const TensorView& tensor) const;
  Request allgather_request(std::string name, const TensorView& input,
                            OutputAllocator allocate) const;
  Request reducescatter_request(std::string name, const TensorView& input,
                                const TensorView& output, ReduceOp op) const;
  /// name.0, name.1, ... (just `name` for a group of one), as grouped all-reduces name theirs.
  static std::string member_name(const std::string& name, std::size_t index, std::size_t count);
  [[noreturn]] void refuse(const std::string& what) const;

  // Engine thread: the loop.
  void run();
  /// Moves requests taken from the queue into outstanding_ (and a join() marker aside);
  /// returns whether this cycle carries a join().
  bool take(TakenRequests taken);
  void apply(const CycleResponse& response);
  void count(const Cycle& cycle);
  void fail_everything(const Error& error);
  /// `error` naming this engine's group (a process set), unless it already does or the engine
  /// is a world's: a lost peer on the data plane says only which rank was lost.
  Error in_this_group(const Error& error) const;

  int rank_;
  int size_;
  RankNames names_;  // how messages name this engine's ranks and the engine itself
  EngineConfig config_;
  RequestQueue queue_;
  TimelineTrack timeline_;
  Outstanding outstanding_;  // engine thread only
  Negotiator negotiator_;
  Executor executor_;

  // Engine thread only.
  std::optional<Request> join_request_;
  bool world_busy_ = false;
  std::chrono::microseconds idle_interval_;
  Clock::time_point stop_requested_{};

  std::atomic<bool> joined_{false};
  std::mutex names_mutex_;
  std::set<std::string> pending_names_;  // name mode: enqueued and not completed
  mutable std::mutex state_mutex_;
  std::optional<Error> failure_;  // why the engine stopped
  EngineStats stats_;             // the negotiation's counters; the executor keeps its own
  std::thread thread_;
  std::unique_ptr<P2PWorker> p2p_;  // null when made without a messenger
};

}  // namespace ringfuse::engine
