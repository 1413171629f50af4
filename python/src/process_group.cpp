// ringfuse._c10d: the torch.distributed process group "ringfuse" (torch 1.13's
// c10d::ProcessGroup), over a Ringfuse Context that bootstraps from the c10d Store torch hands
// over. Python's ringfuse.distributed registers it with Backend.register_backend.
//
// Collectives run in submission order on one worker thread per process group (as Gloo's do),
// so DDP overlaps communication with backward; each returns a Work whose future DDP's
// communication hooks chain on. The blocking Context collectives underneath bound every wait by
// the process group's timeout, so a lost peer fails the Work instead of hanging it.
//
// send, recv and recvAnysource go through the Context's engine (process_group_p2p.hpp), beside
// the collectives' queue; new_group needs nothing here (ringfuse.distributed builds a group's
// Context over the group's store).
#include <torch/csrc/utils/pybind.h>

#include <ATen/ATen.h>
#include <ATen/core/ivalue_inl.h>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <pybind11/chrono.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/errors.hpp"
#include "process_group_p2p.hpp"
#include "process_group_store.hpp"
#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace py = pybind11;
namespace rf = ringfuse;

namespace ringfuse::python {
namespace {

constexpr const char* kBackendName = "ringfuse";

std::optional<DataType> ringfuse_dtype(at::ScalarType type) {
  switch (type) {
    case at::kHalf: return DataType::f16;
    case at::kBFloat16: return DataType::bf16;
    case at::kFloat: return DataType::f32;
    case at::kDouble: return DataType::f64;
    case at::kChar: return DataType::i8;
    case at::kByte: return DataType::u8;
    case at::kShort: return DataType::i16;
    case at::kInt: return DataType::i32;
    case at::kLong: return DataType::i64;
    case at::kBool: return DataType::boolean;
    default: return std::nullopt;
  }
}

/// A Work completed by the worker thread: wait() and the future see the same outcome.
class RingfuseWork final : public ::c10d::Work {
 public:
  RingfuseWork(int rank, ::c10d::OpType type, std::vector<at::Tensor> outputs,
               std::chrono::milliseconds default_timeout, std::string what)
      : Work(rank, type),
        outputs_(std::move(outputs)),
        default_timeout_(default_timeout),
        what_(std::move(what)),
        future_(c10::make_intrusive<at::ivalue::Future>(
            c10::ListType::create(c10::TensorType::get()))) {}

  bool wait(std::chrono::milliseconds timeout) override {
    // kNoTimeout still has a deadline: the process group's timeout plus the time the queue
    // ahead may take is bounded by the collectives' own timeouts; a margin covers the rest.
    const auto limit = timeout == ::kNoTimeout ? default_timeout_ * 2 : timeout;
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, limit, [&] { return completed_; })) {
      throw core::rank_error(ErrorKind::timeout, rank_,
                             "{}: not finished after {} ms (Work.wait timeout); a peer may be "
                             "stuck or slow, or the ranks called different collectives",
                             what_, limit.count());
    }
    if (exception_) std::rethrow_exception(exception_);
    return true;
  }

  std::vector<at::Tensor> result() override { return outputs_; }

  c10::intrusive_ptr<c10::ivalue::Future> getFuture() override { return future_; }

  void complete(std::exception_ptr error) {
    finish(error);
    if (error) {
      future_->setError(error);
    } else {
      future_->markCompleted(c10::IValue(outputs_));
    }
  }

 private:
  std::vector<at::Tensor> outputs_;
  std::chrono::milliseconds default_timeout_;
  std::string what_;
  c10::intrusive_ptr<c10::ivalue::Future> future_;
};

struct WorldPlacement {
  int local_rank = 0;
  int local_size = 1;
  std::string host_addr;  // where peers reach this rank; empty: 127.0.0.1
  std::string job_secret;
  std::string job_id = "torch";  // names shared-memory segments: unique per group on a host
};

class ProcessGroupRingfuse final : public ::c10d::ProcessGroup {
 public:
  ProcessGroupRingfuse(const c10::intrusive_ptr<::c10d::Store>& store, int rank, int size,
                       std::chrono::milliseconds timeout, const WorldPlacement& placement)
      : ProcessGroup(rank, size), timeout_(timeout) {
    WorldSpec world;
    world.rank = rank;
    world.size = size;
    world.local_rank = placement.local_rank;
    world.local_size = placement.local_size;
    if (placement.local_size > 0 && size % placement.local_size == 0) {
      world.cross_rank = rank / placement.local_size;
      world.cross_size = size / placement.local_size;
    } else {
      world.local_rank = rank;
      world.local_size = size;
    }
    world.job_id = placement.job_id;
    world.job_secret = placement.job_secret;
    world.source = "torch.distributed store";
    ringfuse::Options options = options_from_environment();
    options.op_timeout = timeout;
    options.connect_timeout = timeout;
    if (!placement.host_addr.empty()) options.host_addr = placement.host_addr;
    context_ = ringfuse::init(world, options, std::make_shared<C10dStore>(store, rank));
    // The engine carries send/recv. Started here, as the Context was: collective, and on
    // the thread that uses torch's store (see process_group_p2p.hpp).
    p2p_ = std::make_unique<PointToPoint>(*context_, context_->engine(), timeout);
    worker_ = std::thread([this] { run_queue(); });
  }

  ~ProcessGroupRingfuse() override {
    {
      std::lock_guard lock(queue_mutex_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    if (!worker_.joinable()) return;
    // The worker drops the tensors of the collectives it ran, and dropping a tensor that has a
    // Python object takes the GIL: joining it with the GIL held (destroy_process_group) would
    // deadlock.
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      worker_.join();
    } else {
      worker_.join();
    }
  }

  const std::string getBackendName() const override { return kBackendName; }

  c10::intrusive_ptr<::c10d::Work> broadcast(std::vector<at::Tensor>& tensors,
                                             const ::c10d::BroadcastOptions& opts) override {
    auto tensor = single("broadcast", tensors);
    check_root("broadcast", opts.rootRank);
    return enqueue(::c10d::OpType::BROADCAST, "broadcast", {tensor}, [=, this] {
      auto buffer = tensor.contiguous();
      context_->broadcast(buffer.data_ptr(), buffer.nbytes(), DataType::u8,
                          static_cast<int>(opts.rootRank));
      copy_back(buffer, tensor);
    });
  }

  c10::intrusive_ptr<::c10d::Work> allreduce(std::vector<at::Tensor>& tensors,
                                             const ::c10d::AllreduceOptions& opts) override {
    if (tensors.size() == 1 && tensors[0].defined() && tensors[0].is_sparse()) {
      return sparse_allreduce(tensors[0], opts);
    }
    auto tensor = single("allreduce", tensors);
    const auto op = reduce_op("allreduce", opts.reduceOp);
    const auto type = reducible("allreduce", tensor);
    return enqueue(::c10d::OpType::ALLREDUCE, describe("allreduce", tensor), {tensor}, [=, this] {
      auto buffer = tensor.contiguous();
      context_->allreduce(buffer.data_ptr(), buffer.numel(), type, op);
      copy_back(buffer, tensor);
    });
  }

  // A sparse COO tensor (as from nn.Embedding(sparse=True)): every rank's indices and values
  // are gathered to all (their counts differ) and summed into one coalesced tensor, as Gloo does.
  c10::intrusive_ptr<::c10d::Work> sparse_allreduce(const at::Tensor& tensor,
                                                    const ::c10d::AllreduceOptions& opts) {
    if (!tensor.device().is_cpu()) check_cpu("allreduce", tensor);  // says which device
    if (opts.reduceOp.op_ != ::c10d::ReduceOp::SUM) {
      refuse("allreduce", "a sparse tensor can only be reduced with SUM");
    }
    return enqueue(::c10d::OpType::ALLREDUCE, describe("sparse allreduce", tensor), {tensor},
                   [=, this] {
                     auto input = tensor.coalesce();
                     check_same_sparse_layout(input);
                     // [nnz, sparse_dim] rows, so the ranks' blocks concatenate along nnz.
                     auto indices = input._indices().t().contiguous();
                     auto values = input._values().contiguous();
                     std::vector<int64_t> nnz(getSize());
                     const int64_t own_nnz = input._nnz();
                     context_->allgather(&own_nnz, nnz.data(), 1, DataType::i64);
                     const auto total = std::accumulate(nnz.begin(), nnz.end(), int64_t{0});
                     auto all_indices = at::empty({total, input.sparse_dim()}, indices.options());
                     auto value_sizes = values.sizes().vec();
                     value_sizes[0] = total;
                     auto all_values = at::empty(value_sizes, values.options());
                     std::vector<std::size_t> index_counts, value_bytes;
                     for (const auto n : nnz) {
                       index_counts.push_back(static_cast<std::size_t>(n * input.sparse_dim()));
                       value_bytes.push_back(static_cast<std::size_t>(
                           n * dense_row_elements(input) * values.element_size()));
                     }
                     context_->allgatherv(indices.data_ptr(), all_indices.data_ptr(),
                                          index_counts, DataType::i64);
                     context_->allgatherv(values.data_ptr(), all_values.data_ptr(), value_bytes,
                                          DataType::u8);
                     auto sum = at::sparse_coo_tensor(all_indices.t(), all_values, input.sizes())
                                    .coalesce();
                     tensor.copy_(sum);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> allreduce_coalesced(
      std::vector<at::Tensor>& tensors, const ::c10d::AllreduceCoalescedOptions& opts) override {
    const auto op = reduce_op("allreduce_coalesced", opts.reduceOp);
    std::vector<DataType> types;
    for (const auto& tensor : tensors) {
      check_cpu("allreduce_coalesced", tensor);
      types.push_back(reducible("allreduce_coalesced", tensor));
    }
    return enqueue(::c10d::OpType::ALLREDUCE_COALESCED, "allreduce_coalesced", tensors,
                   [=, this] {
                     for (std::size_t i = 0; i < tensors.size(); ++i) {
                       auto buffer = tensors[i].contiguous();
                       context_->allreduce(buffer.data_ptr(), buffer.numel(), types[i], op);
                       copy_back(buffer, tensors[i]);
                     }
                   });
  }

  // No reduce in the Context: an all-reduce into a scratch copy, kept by the root only.
  c10::intrusive_ptr<::c10d::Work> reduce(std::vector<at::Tensor>& tensors,
                                          const ::c10d::ReduceOptions& opts) override {
    auto tensor = single("reduce", tensors);
    check_root("reduce", opts.rootRank);
    const auto op = reduce_op("reduce", opts.reduceOp);
    const auto type = reducible("reduce", tensor);
    return enqueue(::c10d::OpType::REDUCE, describe("reduce", tensor), {tensor}, [=, this] {
      auto buffer = tensor.contiguous().clone();
      context_->allreduce(buffer.data_ptr(), buffer.numel(), type, op);
      if (getRank() == opts.rootRank) tensor.copy_(buffer);
    });
  }

  c10::intrusive_ptr<::c10d::Work> allgather(std::vector<std::vector<at::Tensor>>& outputs,
                                             std::vector<at::Tensor>& inputs,
                                             const ::c10d::AllgatherOptions&) override {
    auto input = single("allgather", inputs);
    if (outputs.size() != 1) refuse("allgather", "expects one output list (one device)");
    auto outs = outputs[0];
    check_list("allgather", "output", outs, input);
    return enqueue(::c10d::OpType::ALLGATHER, describe("allgather", input), outs, [=, this] {
      gather_to_all(input, outs);
    });
  }

  c10::intrusive_ptr<::c10d::Work> _allgather_base(at::Tensor& output, at::Tensor& input,
                                                   const ::c10d::AllgatherOptions&) override {
    check_cpu("_allgather_base", input);
    check_cpu("_allgather_base", output);
    if (output.numel() != input.numel() * getSize() || output.dtype() != input.dtype()) {
      refuse("_allgather_base", fmt::format("output must hold world size ({}) x input's {} "
                                            "elements of the input's dtype; it holds {}",
                                            getSize(), input.numel(), output.numel()));
    }
    return enqueue(::c10d::OpType::_ALLGATHER_BASE, describe("_allgather_base", input), {output},
                   [=, this] {
                     auto send = input.contiguous();
                     auto recv = output.contiguous();
                     context_->allgather(send.data_ptr(), recv.data_ptr(), send.nbytes(),
                                         DataType::u8);
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> allgather_coalesced(
      std::vector<std::vector<at::Tensor>>& output_lists, std::vector<at::Tensor>& inputs,
      const ::c10d::AllgatherOptions&) override {
    if (output_lists.size() != static_cast<std::size_t>(getSize())) {
      refuse("allgather_coalesced", "expects one output list per rank");
    }
    for (const auto& list : output_lists) {
      if (list.size() != inputs.size()) {
        refuse("allgather_coalesced", "each output list must hold one tensor per input");
      }
    }
    std::vector<at::Tensor> flat;
    for (const auto& list : output_lists) flat.insert(flat.end(), list.begin(), list.end());
    return enqueue(::c10d::OpType::ALLGATHER_COALESCED, "allgather_coalesced", flat, [=, this] {
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        std::vector<at::Tensor> outs;
        for (const auto& list : output_lists) outs.push_back(list[i]);
        gather_to_all(inputs[i], outs);
      }
    });
  }

  // Gather moves as much as an allgather here (no rooted collective in the Context).
  c10::intrusive_ptr<::c10d::Work> gather(std::vector<std::vector<at::Tensor>>& outputs,
                                          std::vector<at::Tensor>& inputs,
                                          const ::c10d::GatherOptions& opts) override {
    auto input = single("gather", inputs);
    check_root("gather", opts.rootRank);
    const bool root = getRank() == opts.rootRank;
    std::vector<at::Tensor> outs;
    if (root) {
      if (outputs.size() != 1) refuse("gather", "the root expects one output list");
      outs = outputs[0];
      check_list("gather", "output", outs, input);
    } else if (!outputs.empty()) {
      refuse("gather", "only the root passes an output list");
    }
    return enqueue(::c10d::OpType::GATHER, describe("gather", input), outs, [=, this] {
      if (root) {
        gather_to_all(input, outs);
      } else {
        std::vector<at::Tensor> scratch;
        for (int r = 0; r < getSize(); ++r) scratch.push_back(at::empty_like(input));
        gather_to_all(input, scratch);
      }
    });
  }

  // Scatter is an all-to-all in which only the root sends.
  c10::intrusive_ptr<::c10d::Work> scatter(std::vector<at::Tensor>& outputs,
                                           std::vector<std::vector<at::Tensor>>& inputs,
                                           const ::c10d::ScatterOptions& opts) override {
    auto output = single("scatter", outputs);
    check_root("scatter", opts.rootRank);
    const int root = static_cast<int>(opts.rootRank);
    std::vector<at::Tensor> ins;
    if (getRank() == root) {
      if (inputs.size() != 1) refuse("scatter", "the root expects one input list");
      ins = inputs[0];
      check_list("scatter", "input", ins, output);
    } else if (!inputs.empty()) {
      refuse("scatter", "only the root passes an input list");
    }
    return enqueue(::c10d::OpType::SCATTER, describe("scatter", output), {output}, [=, this] {
      const auto bytes = static_cast<std::size_t>(output.nbytes());
      std::vector<std::size_t> send_counts(getSize(), 0), recv_counts(getSize(), 0);
      recv_counts[root] = bytes;
      at::Tensor send;
      if (getRank() == root) {
        std::fill(send_counts.begin(), send_counts.end(), bytes);
        send = at::cat(flattened(ins));
      }
      auto recv = output.contiguous();
      context_->alltoallv(send.defined() ? send.data_ptr() : nullptr, send_counts,
                          recv.data_ptr(), recv_counts, DataType::u8);
      copy_back(recv, output);
    });
  }

  c10::intrusive_ptr<::c10d::Work> reduce_scatter(
      std::vector<at::Tensor>& outputs, std::vector<std::vector<at::Tensor>>& inputs,
      const ::c10d::ReduceScatterOptions& opts) override {
    auto output = single("reduce_scatter", outputs);
    if (inputs.size() != 1) refuse("reduce_scatter", "expects one input list (one device)");
    auto ins = inputs[0];
    check_list("reduce_scatter", "input", ins, output);
    const auto op = reduce_op("reduce_scatter", opts.reduceOp);
    const auto type = reducible("reduce_scatter", output);
    return enqueue(::c10d::OpType::REDUCE_SCATTER, describe("reduce_scatter", output), {output},
                   [=, this] {
                     auto send = at::cat(flattened(ins));
                     auto recv = output.contiguous();
                     context_->reducescatter(send.data_ptr(), recv.data_ptr(), recv.numel(),
                                             type, op);
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> _reduce_scatter_base(
      at::Tensor& output, at::Tensor& input, const ::c10d::ReduceScatterOptions& opts) override {
    check_cpu("_reduce_scatter_base", input);
    check_cpu("_reduce_scatter_base", output);
    if (input.numel() != output.numel() * getSize() || output.dtype() != input.dtype()) {
      refuse("_reduce_scatter_base",
             fmt::format("input must hold world size ({}) x output's {} elements of the "
                         "output's dtype; it holds {}",
                         getSize(), output.numel(), input.numel()));
    }
    const auto op = reduce_op("_reduce_scatter_base", opts.reduceOp);
    const auto type = reducible("_reduce_scatter_base", output);
    return enqueue(::c10d::OpType::_REDUCE_SCATTER_BASE, describe("_reduce_scatter_base", input),
                   {output}, [=, this] {
                     auto send = input.contiguous();
                     auto recv = output.contiguous();
                     context_->reducescatter(send.data_ptr(), recv.data_ptr(), recv.numel(),
                                             type, op);
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> alltoall_base(at::Tensor& output, at::Tensor& input,
                                                 std::vector<int64_t>& output_splits,
                                                 std::vector<int64_t>& input_splits,
                                                 const ::c10d::AllToAllOptions&) override {
    check_cpu("alltoall_base", input);
    check_cpu("alltoall_base", output);
    if (input.dtype() != output.dtype()) refuse("alltoall_base", "input and output dtypes differ");
    const auto send_counts = split_bytes("alltoall_base", "input", input, input_splits);
    const auto recv_counts = split_bytes("alltoall_base", "output", output, output_splits);
    return enqueue(::c10d::OpType::ALLTOALL_BASE, describe("alltoall_base", input), {output},
                   [=, this] {
                     auto send = input.contiguous();
                     auto recv = output.contiguous();
                     context_->alltoallv(send.data_ptr(), send_counts, recv.data_ptr(),
                                         recv_counts, DataType::u8);
                     copy_back(recv, output);
                   });
  }

  c10::intrusive_ptr<::c10d::Work> alltoall(std::vector<at::Tensor>& outputs,
                                            std::vector<at::Tensor>& inputs,
                                            const ::c10d::AllToAllOptions&) override {
    if (outputs.size() != static_cast<std::size_t>(getSize()) || inputs.size() != outputs.size()) {
      refuse("alltoall", fmt::format("expects {} input and {} output tensors, one per rank",
                                     getSize(), getSize()));
    }
    std::vector<std::size_t> send_counts, recv_counts;
    for (int r = 0; r < getSize(); ++r) {
      check_cpu("alltoall", inputs[r]);
      check_cpu("alltoall", outputs[r]);
      send_counts.push_back(inputs[r].nbytes());
      recv_counts.push_back(outputs[r].nbytes());
    }
    return enqueue(::c10d::OpType::ALLTOALL, "alltoall", outputs, [=, this] {
      auto send = at::cat(flattened(inputs));
      auto recv = at::empty({static_cast<int64_t>(std::accumulate(
                                recv_counts.begin(), recv_counts.end(), std::size_t{0}))},
                            at::kByte);
      context_->alltoallv(send.data_ptr(), send_counts, recv.data_ptr(), recv_counts,
                          DataType::u8);
      std::size_t offset = 0;
      for (int r = 0; r < getSize(); ++r) {
        auto bytes = recv.narrow(0, static_cast<int64_t>(offset),
                                 static_cast<int64_t>(recv_counts[r]));
        outputs[r].copy_(bytes.view(outputs[r].scalar_type()).view(outputs[r].sizes()));
        offset += recv_counts[r];
      }
    });
  }

  // device_ids name GPUs for NCCL's barrier; on CPU there is nothing to pick.
  c10::intrusive_ptr<::c10d::Work> barrier(const ::c10d::BarrierOptions&) override {
    return enqueue(::c10d::OpType::BARRIER, "barrier", {}, [this] { context_->barrier(); });
  }

  c10::intrusive_ptr<::c10d::Work> send(std::vector<at::Tensor>& tensors, int peer,
                                        int tag) override {
    return p2p_->send(single("send", tensors), peer, tag);
  }
  c10::intrusive_ptr<::c10d::Work> recv(std::vector<at::Tensor>& tensors, int peer,
                                        int tag) override {
    return p2p_->recv(single("recv", tensors), peer, tag);
  }
  c10::intrusive_ptr<::c10d::Work> recvAnysource(std::vector<at::Tensor>& tensors,
                                                 int tag) override {
    return p2p_->recv(single("recvAnysource", tensors), kAnySource, tag);
  }

 private:
  [[noreturn]] void refuse(const std::string& call, const std::string& why) const {
    throw core::rank_error(ErrorKind::invalid_argument, getRank(), "ProcessGroup ringfuse: {}: {}",
                           call, why);
  }

  void check_cpu(const std::string& call, const at::Tensor& tensor) const {
    if (!tensor.defined()) refuse(call, "a tensor is undefined");
    if (!tensor.device().is_cpu()) {
      refuse(call, fmt::format("tensor on {}: this build of the ringfuse process group takes CPU "
                               "tensors only; move it with .cpu() or use the nccl backend",
                               tensor.device().str()));
    }
    if (tensor.is_sparse()) refuse(call, "sparse tensors are not supported; pass .to_dense()");
  }

  at::Tensor single(const std::string& call, const std::vector<at::Tensor>& tensors) const {
    if (tensors.size() != 1) {
      refuse(call, fmt::format("expects exactly one tensor (one device per process), got {}",
                               tensors.size()));
    }
    check_cpu(call, tensors[0]);
    return tensors[0];
  }

  void check_root(const std::string& call, int64_t root) const {
    if (root < 0 || root >= getSize()) {
      refuse(call, fmt::format("root rank {} is outside the group of {}", root, getSize()));
    }
  }

  void check_list(const std::string& call, const std::string& role,
                  const std::vector<at::Tensor>& list, const at::Tensor& like) const {
    if (list.size() != static_cast<std::size_t>(getSize())) {
      refuse(call, fmt::format("the {} list holds {} tensors; it needs one per rank ({})", role,
                               list.size(), getSize()));
    }
    for (const auto& tensor : list) {
      check_cpu(call, tensor);
      if (tensor.numel() != like.numel() || tensor.scalar_type() != like.scalar_type()) {
        refuse(call, fmt::format("every {} tensor must match {} with {} elements; one has {} {}",
                                 role, c10::toString(like.scalar_type()), like.numel(),
                                 c10::toString(tensor.scalar_type()),
                                 tensor.numel()));
      }
    }
  }

  DataType reducible(const std::string& call, const at::Tensor& tensor) const {
    const auto type = ringfuse_dtype(tensor.scalar_type());
    if (!type) {
      refuse(call, fmt::format("dtype {} cannot be reduced by Ringfuse",
                             c10::toString(tensor.scalar_type())));
    }
    return *type;
  }

  ReduceOp reduce_op(const std::string& call, const ::c10d::ReduceOp& op) const {
    switch (op.op_) {
      case ::c10d::ReduceOp::SUM: return ReduceOp::sum;
      case ::c10d::ReduceOp::AVG: return ReduceOp::avg;
      case ::c10d::ReduceOp::PRODUCT: return ReduceOp::prod;
      case ::c10d::ReduceOp::MIN: return ReduceOp::min;
      case ::c10d::ReduceOp::MAX: return ReduceOp::max;
      default:
        refuse(call, "reduce op not supported (Ringfuse reduces with SUM, AVG, PRODUCT, MIN, "
                     "MAX; not BAND, BOR, BXOR or PREMUL_SUM)");
    }
  }

  std::vector<std::size_t> split_bytes(const std::string& call, const std::string& role,
                                       const at::Tensor& tensor,
                                       const std::vector<int64_t>& splits) const {
    const int64_t rows = tensor.dim() == 0 ? 1 : tensor.size(0);
    const auto row_bytes = rows == 0 ? 0 : static_cast<std::size_t>(tensor.nbytes() / rows);
    std::vector<std::size_t> bytes;
    if (splits.empty()) {
      if (rows % getSize() != 0) {
        refuse(call, fmt::format("the {}'s {} rows do not split evenly over {} ranks; pass "
                                 "split sizes",
                                 role, rows, getSize()));
      }
      bytes.assign(getSize(), row_bytes * static_cast<std::size_t>(rows / getSize()));
      return bytes;
    }
    if (splits.size() != static_cast<std::size_t>(getSize()) ||
        std::accumulate(splits.begin(), splits.end(), int64_t{0}) != rows) {
      refuse(call, fmt::format("the {} split sizes must be {} numbers summing to its {} rows",
                               role, getSize(), rows));
    }
    for (const auto split : splits) bytes.push_back(row_bytes * static_cast<std::size_t>(split));
    return bytes;
  }

  static std::vector<at::Tensor> flattened(const std::vector<at::Tensor>& tensors) {
    std::vector<at::Tensor> flat;
    for (const auto& tensor : tensors) flat.push_back(tensor.contiguous().view(-1).view(at::kByte));
    return flat;
  }

  static void copy_back(const at::Tensor& buffer, const at::Tensor& tensor) {
    if (!buffer.is_same(tensor)) tensor.copy_(buffer);
  }

  void gather_to_all(const at::Tensor& input, const std::vector<at::Tensor>& outputs) {
    auto send = input.contiguous();
    auto recv = at::empty({getSize() * static_cast<int64_t>(send.nbytes())}, at::kByte);
    context_->allgather(send.data_ptr(), recv.data_ptr(), send.nbytes(), DataType::u8);
    for (int r = 0; r < getSize(); ++r) {
      auto bytes = recv.narrow(0, r * static_cast<int64_t>(send.nbytes()),
                               static_cast<int64_t>(send.nbytes()));
      outputs[r].copy_(bytes.view(input.scalar_type()).view(outputs[r].sizes()));
    }
  }

  static int64_t dense_row_elements(const at::Tensor& sparse) {
    int64_t elements = 1;
    for (int64_t d = sparse.sparse_dim(); d < sparse.dim(); ++d) elements *= sparse.size(d);
    return elements;
  }

  // Every rank must hold a sparse tensor of the same shape, split and dtype: compared through
  // an allgather of a fingerprint, so a mismatch fails on every rank instead of mixing data.
  void check_same_sparse_layout(const at::Tensor& sparse) {
    int64_t fingerprint = static_cast<int64_t>(sparse.scalar_type()) * 1000003 +
                          sparse.sparse_dim() * 1009 + sparse.dim();
    for (const auto size : sparse.sizes()) fingerprint = fingerprint * 31 + size;
    std::vector<int64_t> all(getSize());
    context_->allgather(&fingerprint, all.data(), 1, DataType::i64);
    for (int r = 0; r < getSize(); ++r) {
      if (all[r] != fingerprint) {
        throw core::error_at(ErrorKind::invalid_argument, getRank(), r,
                             "ProcessGroup ringfuse: sparse allreduce: rank {}'s tensor differs "
                             "from this rank's {} {} (shape, sparse dimensions or dtype); every "
                             "rank must pass the same kind of sparse tensor",
                             r, c10::toString(sparse.scalar_type()),
                             c10::str(sparse.sizes()));
      }
    }
  }

  std::string describe(const std::string& call, const at::Tensor& tensor) const {
    return fmt::format("rank {}: ProcessGroup ringfuse: {} of {}[{}]", getRank(), call,
                       c10::toString(tensor.scalar_type()), tensor.numel());
  }

  c10::intrusive_ptr<::c10d::Work> enqueue(::c10d::OpType type, std::string what,
                                           std::vector<at::Tensor> outputs,
                                           std::function<void()> body) {
    auto work = c10::make_intrusive<RingfuseWork>(getRank(), type, std::move(outputs), timeout_,
                                                  std::move(what));
    {
      std::lock_guard lock(queue_mutex_);
      if (failed_) {
        // The connections behind a failed collective are unusable: say why at once.
        work->complete(failed_);
        return work;
      }
      queue_.push_back({work, std::move(body)});
    }
    queue_cv_.notify_one();
    return work;
  }

  void run_queue() {
    for (;;) {
      Item item;
      {
        std::unique_lock lock(queue_mutex_);
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      std::exception_ptr error;
      try {
        at::AutoDispatchBelowADInplaceOrView guard;  // the copies are not autograd's business
        item.body();
      } catch (const Error& failure) {
        error = std::make_exception_ptr(naming_group_timeout(failure));
        std::lock_guard lock(queue_mutex_);
        if (!failed_) failed_ = error;
      } catch (...) {
        error = std::current_exception();
        std::lock_guard lock(queue_mutex_);
        if (!failed_) failed_ = error;
      }
      item.work->complete(error);
    }
  }

  /// A collective's timeout error says which limit it hit. Under torch.distributed that is the
  /// timeout given to init_process_group or new_group (it became op_timeout), not the
  /// RINGFUSE_TIMEOUT_S the core's message names; torch's own tests, like users, look for the
  /// word "timeout" in it.
  Error naming_group_timeout(const Error& failure) const {
    if (failure.kind() != ErrorKind::timeout) return failure;
    Error named(failure.kind(),
                fmt::format("{} (here the timeout given to init_process_group or new_group: "
                            "{} ms)",
                            failure.what(), timeout_.count()),
                failure.rank(), failure.peer());
    if (failure.sequence() != 0) named.in_collective(failure.sequence(), failure.backend());
    return named;
  }

  struct Item {
    c10::intrusive_ptr<RingfuseWork> work;
    std::function<void()> body;
  };

  std::chrono::milliseconds timeout_;
  // Before context_, so destroyed after it: the engine stops (failing what is pending) before
  // the tensors of unfinished transfers are released.
  std::unique_ptr<PointToPoint> p2p_;
  std::unique_ptr<Context> context_;
  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  std::exception_ptr failed_;
  std::thread worker_;  // last: started once everything it uses exists
};

}  // namespace
}  // namespace ringfuse::python

PYBIND11_MODULE(_c10d, module) {
  module.doc() = "The torch.distributed process group \"ringfuse\" (see ringfuse.distributed).";
  py::module::import("torch.distributed");  // registers c10d's ProcessGroup and Store types
  py::class_<ringfuse::python::ProcessGroupRingfuse, ::c10d::ProcessGroup,
             c10::intrusive_ptr<ringfuse::python::ProcessGroupRingfuse>>(module,
                                                                         "ProcessGroupRingfuse")
      .def(py::init([](const c10::intrusive_ptr<::c10d::Store>& store, int rank, int size,
                       std::chrono::milliseconds timeout, int local_rank, int local_size,
                       std::string host_addr, std::string job_secret, std::string job_id) {
             ringfuse::python::WorldPlacement placement{local_rank, local_size,
                                                        std::move(host_addr),
                                                        std::move(job_secret), std::move(job_id)};
             return c10::make_intrusive<ringfuse::python::ProcessGroupRingfuse>(
                 store, rank, size, timeout, placement);
           }),
           py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("timeout"),
           py::arg("local_rank"), py::arg("local_size"), py::arg("host_addr"),
           py::arg("job_secret"), py::arg("job_id") = "torch", py::call_guard<py::gil_scoped_release>());
}
