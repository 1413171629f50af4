// The NCCL backend (declared in backend/nccl_backend.hpp); built only with CUDA and NCCL.
#include "backend/nccl_backend.hpp"

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/nccl/nccl_types.hpp"
#include "core/errors.hpp"
#include "rendezvous/all_gather.hpp"
#include "rendezvous/prefix_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::backend {
namespace {

std::mutex reason_mutex;
std::string unavailable_reason = "NCCL backend not created yet";

void set_reason(std::string reason) {
  std::lock_guard lock(reason_mutex);
  unavailable_reason = std::move(reason);
}

class NcclBackend final : public Backend {
 public:
  NcclBackend(const NcclSetup& setup, int device)
      : setup_(setup), device_(device) {}

  ~NcclBackend() override {
    if (comm_ != nullptr) {
      if (poisoned_) {
        ncclCommAbort(comm_);
      } else {
        ncclCommDestroy(comm_);
      }
    }
    if (done_ != nullptr) cudaEventDestroy(done_);
    if (ready_ != nullptr) cudaEventDestroy(ready_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (scratch_ != nullptr) cudaFree(scratch_);
  }

  /// Whether the communicator exists (a device collective ran): every rank that made the same
  /// calls agrees, so all of them split it, or none.
  bool has_comm() const { return comm_ != nullptr && !poisoned_; }

  /// ncclCommSplit of the communicator (collective over every rank of it): the backend of the
  /// ranks with `color`, ordered by key, described by `child`; null for a negative color.
  std::unique_ptr<Backend> split(int color, int key, const NcclSetup& child) {
    cuda(cudaSetDevice(device_), fmt::format("cudaSetDevice({})", device_));
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // as the parent's: settle() polls with a deadline
    ncclComm_t comm = nullptr;
    const std::string label = fmt::format("ncclCommSplit (color {}, key {})", color, key);
    const ncclResult_t rc =
        ncclCommSplit(comm_, color < 0 ? NCCL_SPLIT_NOCOLOR : color, key, &comm, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) fail(label, rc);
    settle(label, deadline());
    if (comm == nullptr) return nullptr;
    auto backend = std::make_unique<NcclBackend>(child, device_);
    backend->adopt(comm, label);
    return backend;
  }

  std::string_view name() const override { return "nccl"; }
  std::uint64_t sequence() const override { return sequence_; }
  // NCCL cannot reduce i16, nor with a bitwise operator: those reductions go to the next
  // backend (staging through the host).
  bool enabled(const OpDesc& op) const override {
    const bool reduces = op.kind == OpKind::allreduce || op.kind == OpKind::reducescatter;
    return op.device == Device::cuda && (!reduces || nccl::can_reduce(op.type, op.op));
  }

  Executed allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                     Algorithm) override {
    auto label = fmt::format("allreduce {}[{}] {}", to_string(type), count, to_string(op));
    check_reducible(label, type, op);
    run(label, [&] {
      return ncclAllReduce(data, data, count, nccl::data_type(type), nccl::reduce_op(op, type),
                           comm_, stream_);
    });
    return Executed{"nccl", count * element_size(type), std::move(label)};
  }

  void broadcast(void* data, std::size_t count, DataType type, int root) override {
    if (root < 0 || root >= setup_.size) {
      throw core::rank_error(ErrorKind::invalid_argument, setup_.rank,
                             "nccl broadcast: root {} is not a rank of this world of {}", root,
                             setup_.size);
    }
    run(fmt::format("broadcast {}[{}] root {}", to_string(type), count, root), [&] {
      return ncclBroadcast(data, data, count, nccl::data_type(type), root, comm_, stream_);
    });
  }

  void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                  DataType type) override {
    check_counts("allgatherv", counts.size());
    const std::size_t element = element_size(type);
    bool equal = true;
    for (const std::size_t count : counts) equal = equal && count == counts[0];
    run(fmt::format("allgatherv {}", to_string(type)), [&] {
      if (equal) {
        const void* source = send == recv ? static_cast<const std::byte*>(recv) +
                                                counts[0] * element * setup_.rank
                                          : send;
        return ncclAllGather(source, recv, counts[0], nccl::data_type(type), comm_, stream_);
      }
      // NCCL has no all-gather-v: one broadcast per rank, grouped into one launch.
      ncclResult_t rc = ncclGroupStart();
      std::size_t offset = 0;
      for (int root = 0; root < setup_.size && rc == ncclSuccess; ++root) {
        auto* block = static_cast<std::byte*>(recv) + offset * element;
        const void* source = root == setup_.rank && send != recv ? send : block;
        rc = ncclBroadcast(source, block, counts[root], nccl::data_type(type), root, comm_,
                           stream_);
        offset += counts[root];
      }
      const ncclResult_t end = ncclGroupEnd();
      return rc != ncclSuccess ? rc : end;
    });
  }

  void reducescatter(const void* send, void* recv, std::size_t recv_count, DataType type,
                     ReduceOp op) override {
    const auto label = fmt::format("reducescatter {}[{}x{}] {}", to_string(type), setup_.size,
                                   recv_count, to_string(op));
    check_reducible(label, type, op);
    run(label, [&] {
      return ncclReduceScatter(send, recv, recv_count, nccl::data_type(type),
                               nccl::reduce_op(op, type), comm_, stream_);
    });
  }

  void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                 std::span<const std::size_t> recv_counts, DataType type) override {
    check_counts("alltoallv", send_counts.size());
    check_counts("alltoallv", recv_counts.size());
    const std::size_t element = element_size(type);
    run(fmt::format("alltoallv {}", to_string(type)), [&] {
      ncclResult_t rc = ncclGroupStart();
      std::size_t send_offset = 0;
      std::size_t recv_offset = 0;
      for (int peer = 0; peer < setup_.size && rc == ncclSuccess; ++peer) {
        if (send_counts[peer] > 0) {
          rc = ncclSend(static_cast<const std::byte*>(send) + send_offset * element,
                        send_counts[peer], nccl::data_type(type), peer, comm_, stream_);
        }
        if (rc == ncclSuccess && recv_counts[peer] > 0) {
          rc = ncclRecv(static_cast<std::byte*>(recv) + recv_offset * element, recv_counts[peer],
                        nccl::data_type(type), peer, comm_, stream_);
        }
        send_offset += send_counts[peer];
        recv_offset += recv_counts[peer];
      }
      const ncclResult_t end = ncclGroupEnd();
      return rc != ncclSuccess ? rc : end;
    });
  }

  void barrier() override {
    run("barrier", [&] {
      if (scratch_ == nullptr) cuda(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
      return ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_);
    });
  }

  /// nccl_send_recv(): one group of ncclSend/ncclRecv on the communicator's stream.
  std::vector<RecvStatus> send_recv_group(std::span<const P2POp> ops) {
    std::vector<RecvStatus> statuses;
    for (const auto& op : ops) {
      const bool recv = op.kind == P2POp::Kind::recv;
      const char* what = recv ? "recv from" : "send to";
      if (op.peer < 0 || op.peer >= setup_.size) {
        throw core::rank_error(ErrorKind::invalid_argument, setup_.rank,
                               "{} rank {} on device memory: {}", what, op.peer,
                               op.peer == kAnySource
                                   ? "NCCL has no any-source receive; name the sender"
                                   : "not a rank of this world");
      }
      if (op.tag != 0 && !(recv && op.tag == kAnyTag)) {
        throw core::error_at(ErrorKind::invalid_argument, setup_.rank, op.peer,
                             "{} rank {} on device memory: tag {}: NCCL matches a pair's "
                             "messages by order only; use tag 0",
                             what, op.peer, op.tag);
      }
      if (recv) statuses.push_back(RecvStatus{op.peer, 0, op.count});
    }
    run(fmt::format("send/recv group of {}", ops.size()), [&] {
      ncclResult_t rc = ncclGroupStart();
      for (const auto& op : ops) {
        if (rc != ncclSuccess) break;
        rc = op.kind == P2POp::Kind::send
                 ? ncclSend(op.data, op.count, nccl::data_type(op.type), op.peer, comm_, stream_)
                 : ncclRecv(op.data, op.count, nccl::data_type(op.type), op.peer, comm_,
                            stream_);
      }
      const ncclResult_t end = ncclGroupEnd();
      return rc != ncclSuccess ? rc : end;
    });
    return statuses;
  }

 private:
  // The engine hands its device collectives to this backend directly (no enabled() asked).
  void check_reducible(const std::string& label, DataType type, ReduceOp op) const {
    if (is_bitwise(op)) {
      throw core::rank_error(ErrorKind::invalid_argument, setup_.rank,
                             "nccl {}: NCCL has no bitwise reductions ({}); reduce a copy in "
                             "host memory, or run with RINGFUSE_BACKEND=native to stage it "
                             "through host memory",
                             label, to_string(op));
    }
    if (!nccl::can_reduce(type, op)) {
      throw core::rank_error(ErrorKind::invalid_argument, setup_.rank,
                             "nccl {}: NCCL cannot reduce {} (it has no such type); reduce it "
                             "as i32, or run with RINGFUSE_BACKEND=native to stage it through "
                             "host memory",
                             label, to_string(type));
    }
  }

  void check_counts(const char* what, std::size_t given) const {
    if (given != static_cast<std::size_t>(setup_.size)) {
      throw core::rank_error(ErrorKind::invalid_argument, setup_.rank,
                             "nccl {}: {} counts given for a world of {}", what, given,
                             setup_.size);
    }
  }

  void cuda(cudaError_t rc, const std::string& what) const {
    if (rc != cudaSuccess) {
      throw core::rank_error(ErrorKind::system, setup_.rank, "{} failed: {}", what,
                             cudaGetErrorString(rc));
    }
  }

  std::chrono::steady_clock::time_point deadline() const {
    return std::chrono::steady_clock::now() + setup_.timeout;
  }

  /// Waits while the (non-blocking) communicator reports ncclInProgress; throws on an error,
  /// and aborts the communicator when `until` passes.
  void settle(const std::string& label, std::chrono::steady_clock::time_point until) {
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(label, state);
      if (std::chrono::steady_clock::now() > until) abort_after_deadline(label);
      std::this_thread::yield();
    }
  }

  [[noreturn]] void fail(const std::string& label, ncclResult_t rc) {
    poisoned_ = true;
    const char* last = ncclGetLastError(comm_);
    throw core::rank_error(ErrorKind::peer_failure, setup_.rank, "nccl {} failed: {} ({})", label,
                           ncclGetErrorString(rc), last != nullptr ? last : "");
  }

  [[noreturn]] void abort_after_deadline(const std::string& label) {
    poisoned_ = true;
    throw core::rank_error(ErrorKind::timeout, setup_.rank,
                           "nccl {} did not complete within {} s; the communicator "
                           "was aborted (a peer died or stopped calling this collective)",
                           label, setup_.timeout.count() / 1000);
  }

  void ensure_comm() {
    if (poisoned_) {
      throw core::rank_error(ErrorKind::peer_failure, setup_.rank,
                             "the NCCL communicator was aborted by an earlier error");
    }
    if (comm_ != nullptr) return;
    cuda(cudaSetDevice(device_), fmt::format("cudaSetDevice({})", device_));
    ncclUniqueId id{};
    if (setup_.rank == 0) {
      const ncclResult_t rc = ncclGetUniqueId(&id);
      if (rc != ncclSuccess) fail("ncclGetUniqueId", rc);
    }
    if (setup_.store != nullptr) {
      rendezvous::PrefixStore world(*setup_.store, setup_.key_prefix);
      const std::string bytes = rendezvous::broadcast(
          world, "unique-id", std::string_view(reinterpret_cast<const char*>(&id), sizeof(id)),
          setup_.rank, 0, setup_.timeout);
      if (bytes.size() != sizeof(id)) {
        throw core::rank_error(ErrorKind::protocol, setup_.rank,
                               "NCCL unique id from the store has {} bytes, not {}", bytes.size(),
                               sizeof(id));
      }
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // every call returns at once; settle() polls with a deadline
    const ncclResult_t rc = ncclCommInitRankConfig(&comm_, setup_.size, id, setup_.rank, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) {
      comm_ = nullptr;
      poisoned_ = true;
      throw core::rank_error(ErrorKind::peer_failure, setup_.rank, "ncclCommInitRank failed: {}",
                             ncclGetErrorString(rc));
    }
    settle("communicator set-up", deadline());
    make_stream();
    if (setup_.rank == 0) {
      int version = 0;
      ncclGetVersion(&version);
      spdlog::info("ringfuse: NCCL {} communicator of {} ranks on CUDA device {}", version,
                   setup_.size, device_);
    }
  }

  void make_stream() {
    cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "cudaEventCreate");
    cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "cudaEventCreate");
  }

  /// Takes `comm` (split from another communicator) as this backend's, once it is ready.
  void adopt(ncclComm_t comm, const std::string& label) {
    comm_ = comm;
    settle(label, deadline());
    make_stream();
  }

  /// Runs one collective: orders it after the caller's work on the legacy default stream,
  /// enqueues it on our stream, then waits for its event while polling for NCCL errors.
  template <typename Enqueue>
  void run(const std::string& description, Enqueue&& enqueue) {
    const std::string label = fmt::format("{} (nccl collective #{})", description, ++sequence_);
    ensure_comm();
    // The communicator, stream and events belong to device_, whatever the calling thread's
    // current device is.
    cuda(cudaSetDevice(device_), fmt::format("cudaSetDevice({})", device_));
    const auto until = deadline();
    cuda(cudaEventRecord(ready_, cudaStreamLegacy), "cudaEventRecord");
    cuda(cudaStreamWaitEvent(stream_, ready_, 0), "cudaStreamWaitEvent");
    const ncclResult_t rc = enqueue();
    if (rc != ncclSuccess && rc != ncclInProgress) fail(label, rc);
    settle(label, until);
    cuda(cudaEventRecord(done_, stream_), "cudaEventRecord");
    for (;;) {
      const cudaError_t state = cudaEventQuery(done_);
      if (state == cudaSuccess) return;
      if (state != cudaErrorNotReady) cuda(state, label);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess && async != ncclInProgress) fail(label, async);
      if (std::chrono::steady_clock::now() > until) abort_after_deadline(label);
      std::this_thread::yield();
    }
  }

  NcclSetup setup_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  cudaEvent_t done_ = nullptr;
  void* scratch_ = nullptr;
  bool poisoned_ = false;
  std::uint64_t sequence_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_nccl_backend(const NcclSetup& setup) {
  int devices = 0;
  const cudaError_t rc = cudaGetDeviceCount(&devices);
  if (rc != cudaSuccess) {
    set_reason(fmt::format("no CUDA device is usable (cudaGetDeviceCount: error {}, {})",
                           static_cast<int>(rc), cudaGetErrorString(rc)));
    return nullptr;
  }
  if (devices == 0) {
    set_reason("no CUDA device is visible");
    return nullptr;
  }
  if (setup.size > 1 && setup.store == nullptr) {
    set_reason("a multi-rank world without a rendezvous store");
    return nullptr;
  }
  return std::make_unique<NcclBackend>(setup, setup.local_rank % devices);
}

std::unique_ptr<Backend> split_nccl_backend(Backend& parent, int color, int key,
                                            const NcclSetup& child) {
  auto* nccl = dynamic_cast<NcclBackend*>(&parent);
  if (nccl != nullptr && nccl->has_comm()) return nccl->split(color, key, child);
  if (color < 0) return nullptr;
  return make_nccl_backend(child);
}

std::vector<RecvStatus> nccl_send_recv(Backend& nccl, std::span<const P2POp> ops) {
  return dynamic_cast<NcclBackend&>(nccl).send_recv_group(ops);
}

std::string nccl_unavailable_reason() {
  std::lock_guard lock(reason_mutex);
  return unavailable_reason;
}

Device device_of(const void* pointer) {
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, pointer) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls are not confused
    return Device::cpu;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged
             ? Device::cuda
             : Device::cpu;
}

}  // namespace ringfuse::backend
