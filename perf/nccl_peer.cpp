#include "nccl_peer.hpp"

#ifdef RINGFUSE_PERF_HAVE_CUDA

#include <cuda_runtime.h>
#include <nccl.h>

#include <cstring>
#include <thread>

#include <fmt/format.h>

#include "backend/nccl/nccl_types.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::perf {
namespace {

class Nccl final : public Implementation {
 public:
  Nccl(ncclComm_t comm, int size, std::chrono::milliseconds timeout)
      : comm_(comm), size_(size), timeout_(timeout) {
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
  }
  ~Nccl() override {
    if (aborted_) {
      ncclCommAbort(comm_);
    } else {
      ncclCommDestroy(comm_);
    }
    cudaFree(scratch_);
    cudaStreamDestroy(stream_);
  }
  Nccl(const Nccl&) = delete;
  Nccl& operator=(const Nccl&) = delete;

  std::string name() const override { return "nccl"; }
  std::string algo(const CaseSpec&) const override { return "nccl"; }
  std::string unsupported(const CaseSpec& spec) const override {
    if (spec.device != Device::cuda) return "GPU buffers only (--device cuda)";
    if (reduces(spec.collective) && is_bitwise(spec.op)) return "NCCL has no bitwise reductions";
    if (reduces(spec.collective) && !nccl::can_reduce(spec.type, spec.op)) {
      return fmt::format("NCCL has no {} reductions", to_string(spec.type));
    }
    if (reduces(spec.collective) && !is_defined(spec.type, spec.op)) {
      return fmt::format("{} of {} is not defined", to_string(spec.op), to_string(spec.type));
    }
    return {};
  }

  void run(const CaseSpec& spec, Buffers& b) override {
    const Layout& l = spec.layout;
    const ncclDataType_t type = nccl::data_type(spec.type);
    ncclResult_t rc = ncclSuccess;
    switch (spec.collective) {
      case Collective::allreduce:
        rc = ncclAllReduce(b.output(), b.output(), l.count, type,
                           nccl::reduce_op(spec.op, spec.type), comm_, stream_);
        break;
      case Collective::broadcast:
        rc = ncclBroadcast(b.output(), b.output(), l.count, type, spec.root, comm_, stream_);
        break;
      case Collective::allgather:
        rc = ncclAllGather(b.input(), b.output(), l.block, type, comm_, stream_);
        break;
      case Collective::reducescatter:
        rc = ncclReduceScatter(b.input(), b.output(), l.block, type,
                               nccl::reduce_op(spec.op, spec.type), comm_, stream_);
        break;
      case Collective::alltoall: {
        const std::size_t bytes = l.block * element_size(spec.type);
        rc = ncclGroupStart();
        for (int peer = 0; peer < size_ && rc == ncclSuccess; ++peer) {
          rc = ncclSend(static_cast<const std::byte*>(b.input()) + peer * bytes, l.block, type,
                        peer, comm_, stream_);
          if (rc == ncclSuccess) {
            rc = ncclRecv(static_cast<std::byte*>(b.output()) + peer * bytes, l.block, type, peer,
                          comm_, stream_);
          }
        }
        const ncclResult_t end = ncclGroupEnd();
        if (rc == ncclSuccess) rc = end;
        break;
      }
      case Collective::barrier: barrier(); return;
    }
    complete(rc, to_string(spec.collective));
  }

  void barrier() override {
    complete(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, comm_, stream_),
             "barrier");
  }

 private:
  void check(cudaError_t rc, const char* what) {
    if (rc != cudaSuccess) {
      throw Error(ErrorKind::system, fmt::format("nccl peer: {} failed: {}", what,
                                                 cudaGetErrorString(rc)));
    }
  }

  /// Waits until the (non-blocking) communicator has enqueued the call, then for the stream,
  /// polling NCCL's asynchronous errors, within the timeout.
  void complete(ncclResult_t rc, std::string_view what) {
    if (rc != ncclSuccess && rc != ncclInProgress) {
      aborted_ = true;
      throw Error(ErrorKind::peer_failure,
                  fmt::format("nccl peer: {} failed: {}", what, ncclGetErrorString(rc)));
    }
    const auto until = std::chrono::steady_clock::now() + timeout_;
    bool enqueued = false;
    for (;;) {
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      enqueued = enqueued || async == ncclSuccess;
      if (enqueued) {
        const cudaError_t state = cudaStreamQuery(stream_);
        if (state == cudaSuccess) return;
        if (state != cudaErrorNotReady) check(state, "cudaStreamQuery");
      }
      const bool failed = async != ncclSuccess && async != ncclInProgress;
      if (failed || std::chrono::steady_clock::now() > until) {
        aborted_ = true;
        throw Error(failed ? ErrorKind::peer_failure : ErrorKind::timeout,
                    fmt::format("nccl peer: {} {}; the communicator is aborted", what,
                                failed ? ncclGetErrorString(async) : "did not complete in time"));
      }
      std::this_thread::yield();
    }
  }

  ncclComm_t comm_;
  int size_;
  std::chrono::milliseconds timeout_;
  cudaStream_t stream_ = nullptr;
  float* scratch_ = nullptr;
  bool aborted_ = false;
};

}  // namespace

NcclPeer make_nccl_peer(const PeerWorld& world) {
  ncclUniqueId id{};
  const std::string key = world.key_prefix + "unique-id";
  if (world.rank == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&id);
    if (rc != ncclSuccess) {
      return {nullptr, fmt::format("ncclGetUniqueId: {}", ncclGetErrorString(rc))};
    }
  }
  if (world.size > 1) {
    rendezvous::TcpStoreClient store(world.store_host, world.store_port, world.timeout,
                                     world.job_secret);
    if (world.rank == 0) {
      store.set(key, std::string_view(reinterpret_cast<const char*>(&id), sizeof(id)));
    } else {
      const std::string bytes = store.get(key, world.timeout);
      if (bytes.size() != sizeof(id)) {
        return {nullptr, "the unique id in the store has the wrong size"};
      }
      std::memcpy(&id, bytes.data(), sizeof(id));
    }
  }
  // Non-blocking set-up polled against the timeout, so a rank that never arrives ends the wait
  // with a reason instead of a hang.
  ncclComm_t comm = nullptr;
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t rc = ncclCommInitRankConfig(&comm, world.size, id, world.rank, &config);
  const auto until = std::chrono::steady_clock::now() + world.timeout;
  while (rc == ncclInProgress || rc == ncclSuccess) {
    ncclResult_t state = ncclSuccess;
    ncclCommGetAsyncError(comm, &state);
    if (state == ncclSuccess) {
      rc = ncclSuccess;
      break;
    }
    if (state != ncclInProgress) {
      rc = state;
      break;
    }
    if (std::chrono::steady_clock::now() > until) {
      ncclCommAbort(comm);
      return {nullptr, fmt::format("ncclCommInitRank did not complete within {} s",
                                   world.timeout.count() / 1000)};
    }
    std::this_thread::yield();
  }
  if (rc != ncclSuccess) {
    if (comm != nullptr) ncclCommAbort(comm);
    return {nullptr, fmt::format("ncclCommInitRank: {}", ncclGetErrorString(rc))};
  }
  return {std::make_unique<Nccl>(comm, world.size, world.timeout), {}};
}

}  // namespace ringfuse::perf

#else

namespace ringfuse::perf {

NcclPeer make_nccl_peer(const PeerWorld&) {
  return {nullptr, "built without CUDA and NCCL"};
}

}  // namespace ringfuse::perf

#endif
