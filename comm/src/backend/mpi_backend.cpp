#include "backend/mpi_backend.hpp"

#include <chrono>
#include <climits>
#include <cstdlib>
#include <memory>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/collective_watchdog.hpp"
#include "backend/mpi_types.hpp"
#include "core/errors.hpp"
#include "reduce/reduce.hpp"
#include "ringfuse/error.hpp"

#ifdef RINGFUSE_HAVE_MPI
#include <mpi.h>
#endif

namespace ringfuse::backend {

#ifdef RINGFUSE_HAVE_MPI

namespace {

// User-defined reductions for the 2-byte float types: MPI hands us `len` elements of our
// 2-byte contiguous type, which reduce_into treats as f16 or bf16.
template <DataType Type, ReduceOp Op>
void half_reduce(void* in, void* inout, int* len, MPI_Datatype*) {
  reduce::reduce_into(inout, in, static_cast<std::size_t>(*len), Type, Op);
}

template <DataType Type>
MPI_User_function* half_function(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return &half_reduce<Type, ReduceOp::sum>;
    case ReduceOp::min: return &half_reduce<Type, ReduceOp::min>;
    case ReduceOp::max: return &half_reduce<Type, ReduceOp::max>;
    case ReduceOp::prod: return &half_reduce<Type, ReduceOp::prod>;
    case ReduceOp::band:
    case ReduceOp::bor:
    case ReduceOp::bxor: break;  // not defined on floating point (ringfuse::is_defined)
  }
  return &half_reduce<Type, ReduceOp::sum>;
}

// The operators defined on f16 and bf16: sum to prod, the first ReduceOp values.
constexpr int kHalfOps = static_cast<int>(ReduceOp::prod) + 1;

class MpiBackend final : public Backend {
 public:
  MpiBackend(int rank, int size, std::chrono::milliseconds timeout)
      : rank_(rank),
        size_(size),
        watchdog_(timeout, [this](const std::string& label, std::chrono::milliseconds limit) {
          abort_stalled(label, limit);
        }) {
    check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    int mpi_rank = 0;
    int mpi_size = 0;
    MPI_Comm_rank(comm_, &mpi_rank);
    MPI_Comm_size(comm_, &mpi_size);
    if (mpi_rank != rank_ || mpi_size != size_) {
      throw Error(ErrorKind::invalid_config,
                  fmt::format("RINGFUSE_BACKEND=mpi: MPI_COMM_WORLD is rank {} of {}, but this "
                              "world is rank {} of {}",
                              mpi_rank, mpi_size, rank_, size_),
                  rank_);
    }
    make_half_types();
  }

  /// Adopts `comm`, a communicator split from another backend's (split_mpi_backend).
  MpiBackend(MPI_Comm comm, std::chrono::milliseconds timeout)
      : rank_(0),
        size_(0),
        comm_(comm),
        watchdog_(timeout, [this](const std::string& label, std::chrono::milliseconds limit) {
          abort_stalled(label, limit);
        }) {
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    make_half_types();
  }

  MPI_Comm comm() const { return comm_; }

  ~MpiBackend() override {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (finalised) return;  // the program finalised MPI itself: nothing left to free
    for (int op = 0; op < kHalfOps; ++op) {
      MPI_Op_free(&f16_ops_[op]);
      MPI_Op_free(&bf16_ops_[op]);
    }
    MPI_Type_free(&half_type_);
    MPI_Comm_free(&comm_);
  }

  std::string_view name() const override { return "mpi"; }
  std::uint64_t sequence() const override { return sequence_; }
  bool enabled(const OpDesc& op) const override { return op.device == Device::cpu; }

  Executed allreduce(void* data, std::size_t count, DataType type, ReduceOp op,
                     Algorithm) override {
    const auto call = begin(fmt::format("allreduce {}[{}] {}", to_string(type), count,
                                         to_string(op)));
    const std::string& label = call.label;
    if (count > 0 && data == nullptr) invalid(label, "data is null");
    const std::size_t element = element_size(type);
    for (std::size_t done = 0; done < count;) {  // MPI counts are int: chunk huge buffers
      const std::size_t chunk = std::min<std::size_t>(count - done, INT_MAX);
      check(MPI_Allreduce(MPI_IN_PLACE, static_cast<std::byte*>(data) + done * element,
                          static_cast<int>(chunk), datatype(type), mpi_op(type, op), comm_),
            label);
      done += chunk;
    }
    if (op == ReduceOp::avg && count > 0) {
      reduce::divide(data, count, type, static_cast<std::size_t>(size_));
    }
    return Executed{"mpi", count * element, label};
  }

  void broadcast(void* data, std::size_t count, DataType type, int root) override {
    const auto call = begin(fmt::format("broadcast {}[{}] root {}", to_string(type), count, root));
    const std::string& label = call.label;
    if (root < 0 || root >= size_) {
      invalid(label, fmt::format("root {} is not a rank of this world of {}", root, size_));
    }
    if (count > 0 && data == nullptr) invalid(label, "data is null");
    const std::size_t element = element_size(type);
    for (std::size_t done = 0; done < count;) {
      const std::size_t chunk = std::min<std::size_t>(count - done, INT_MAX);
      check(MPI_Bcast(static_cast<std::byte*>(data) + done * element, static_cast<int>(chunk),
                      datatype(type), root, comm_),
            label);
      done += chunk;
    }
  }

  void allgatherv(const void* send, void* recv, std::span<const std::size_t> counts,
                  DataType type) override {
    const auto call = begin(fmt::format("allgatherv {}", to_string(type)));
    const std::string& label = call.label;
    if (counts.size() != static_cast<std::size_t>(size_)) {
      invalid(label, fmt::format("{} counts given for a world of {}", counts.size(), size_));
    }
    std::vector<int> sizes;
    std::vector<int> offsets;
    displacements(label, counts, sizes, offsets);
    const std::size_t element = element_size(type);
    auto* own = static_cast<std::byte*>(recv) + static_cast<std::size_t>(offsets[rank_]) * element;
    // As in the native backend, send == recv means "my block is already in place".
    const void* source = (send == recv || send == own) ? MPI_IN_PLACE : send;
    check(MPI_Allgatherv(source, sizes[rank_], datatype(type), recv, sizes.data(),
                         offsets.data(), datatype(type), comm_),
          label);
  }

  void reducescatter(const void* send, void* recv, std::size_t recv_count, DataType type,
                     ReduceOp op) override {
    const auto call = begin(fmt::format("reducescatter {}[{}x{}] {}", to_string(type), size_,
                                         recv_count, to_string(op)));
    const std::string& label = call.label;
    if (recv_count * static_cast<std::size_t>(size_) > INT_MAX) {
      invalid(label, "more than 2^31-1 elements; use the native backend");
    }
    if (recv_count == 0) return;
    check(MPI_Reduce_scatter_block(send, recv, static_cast<int>(recv_count), datatype(type),
                                   mpi_op(type, op), comm_),
          label);
    if (op == ReduceOp::avg) {
      reduce::divide(recv, recv_count, type, static_cast<std::size_t>(size_));
    }
  }

  void alltoallv(const void* send, std::span<const std::size_t> send_counts, void* recv,
                 std::span<const std::size_t> recv_counts, DataType type) override {
    const auto call = begin(fmt::format("alltoallv {}", to_string(type)));
    const std::string& label = call.label;
    if (send_counts.size() != static_cast<std::size_t>(size_) ||
        recv_counts.size() != static_cast<std::size_t>(size_)) {
      invalid(label, fmt::format("{} send counts and {} receive counts given for a world of {}",
                                 send_counts.size(), recv_counts.size(), size_));
    }
    std::vector<int> send_sizes, send_offsets, recv_sizes, recv_offsets;
    displacements(label, send_counts, send_sizes, send_offsets);
    displacements(label, recv_counts, recv_sizes, recv_offsets);
    check(MPI_Alltoallv(send, send_sizes.data(), send_offsets.data(), datatype(type), recv,
                        recv_sizes.data(), recv_offsets.data(), datatype(type), comm_),
          label);
  }

  void barrier() override {
    const auto call = begin("barrier");
    const std::string& label = call.label;
    check(MPI_Barrier(comm_), label);
  }

 private:
  // One collective: its label for messages, and the watchdog's deadline while it runs.
  struct Call {
    Call(CollectiveWatchdog& watchdog, std::string text)
        : label(std::move(text)), guard(watchdog, label) {}
    std::string label;
    CollectiveWatchdog::Guard guard;
  };

  Call begin(const std::string& description) {
    return Call(watchdog_, fmt::format("{} (mpi collective #{})", description, ++sequence_));
  }

  // On the watchdog's thread: the collective is still blocked inside MPI, which can neither
  // time it out nor cancel it, so the only way not to hang is to end the job, loudly.
  [[noreturn]] void abort_stalled(const std::string& label, std::chrono::milliseconds limit) {
    spdlog::error("rank {}: {}: not finished after {} s (RINGFUSE_TIMEOUT_S): a rank is stalled, "
                  "dead, or not calling the same collective. MPI cannot cancel a collective, so "
                  "this rank aborts the MPI job (MPI_Abort, exit code 3)",
                  rank_, label, limit.count() / 1000.0);
    spdlog::default_logger()->flush();
    MPI_Abort(comm_, 3);
    std::_Exit(3);  // MPI_Abort does not return; should it, the process still must not hang
  }

  void make_half_types() {
    MPI_Type_contiguous(2, MPI_BYTE, &half_type_);
    MPI_Type_commit(&half_type_);
    for (int op = 0; op < kHalfOps; ++op) {
      MPI_Op_create(half_function<DataType::f16>(static_cast<ReduceOp>(op)), 1, &f16_ops_[op]);
      MPI_Op_create(half_function<DataType::bf16>(static_cast<ReduceOp>(op)), 1, &bf16_ops_[op]);
    }
  }

  [[noreturn]] void invalid(const std::string& label, const std::string& what) const {
    throw core::rank_error(ErrorKind::invalid_argument, rank_, "{}: {}", label, what);
  }

  void check(int rc, const std::string& label) const {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(rc, text, &length);
    throw core::rank_error(ErrorKind::peer_failure, rank_, "{} failed in MPI: {} (code {})", label,
                           std::string(text, static_cast<std::size_t>(length)), rc);
  }

  void displacements(const std::string& label, std::span<const std::size_t> counts,
                     std::vector<int>& sizes, std::vector<int>& offsets) const {
    std::size_t offset = 0;
    for (const std::size_t count : counts) {
      if (count > INT_MAX || offset > INT_MAX) {
        invalid(label, "more than 2^31-1 elements; use the native backend");
      }
      sizes.push_back(static_cast<int>(count));
      offsets.push_back(static_cast<int>(offset));
      offset += count;
    }
  }

  MPI_Datatype datatype(DataType type) const {
    if (type == DataType::f16 || type == DataType::bf16) return half_type_;
    return mpi::datatype(type);
  }

  MPI_Op mpi_op(DataType type, ReduceOp op) const {
    if (type == DataType::f16) return f16_ops_[static_cast<int>(op)];
    if (type == DataType::bf16) return bf16_ops_[static_cast<int>(op)];
    return mpi::reduce_op(type, op);
  }

  int rank_;
  int size_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Datatype half_type_ = MPI_DATATYPE_NULL;
  MPI_Op f16_ops_[kHalfOps] = {};
  MPI_Op bf16_ops_[kHalfOps] = {};
  std::uint64_t sequence_ = 0;
  CollectiveWatchdog watchdog_;  // last: its thread is stopped before the rest goes
};

}  // namespace

bool mpi_available() {
  int initialised = 0;
  int finalised = 0;
  MPI_Initialized(&initialised);
  MPI_Finalized(&finalised);
  return initialised != 0 && finalised == 0;
}

std::unique_ptr<Backend> make_mpi_backend(int rank, int size, std::chrono::milliseconds timeout) {
  if (!mpi_available()) {
    throw Error(ErrorKind::invalid_config,
                "RINGFUSE_BACKEND=mpi needs a world started by plain mpirun (MPI is not "
                "initialised in this process); launch with mpirun, or use RINGFUSE_BACKEND=auto "
                "or native under ringfuse-run/torchrun",
                rank);
  }
  return std::make_unique<MpiBackend>(rank, size, timeout);
}

std::unique_ptr<Backend> split_mpi_backend(Backend& parent, int color, int key,
                                           std::chrono::milliseconds timeout) {
  auto* mpi = dynamic_cast<MpiBackend*>(&parent);
  if (mpi == nullptr) {
    throw Error(ErrorKind::invalid_argument, "split_mpi_backend: the parent is not an MPI backend");
  }
  MPI_Comm child = MPI_COMM_NULL;
  const int rc = MPI_Comm_split(mpi->comm(), color < 0 ? MPI_UNDEFINED : color, key, &child);
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(rc, text, &length);
    throw Error(ErrorKind::peer_failure,
                fmt::format("MPI_Comm_split failed: {} (code {})",
                            std::string(text, static_cast<std::size_t>(length)), rc));
  }
  if (child == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiBackend>(child, timeout);
}

#else

bool mpi_available() { return false; }

std::unique_ptr<Backend> split_mpi_backend(Backend&, int, int, std::chrono::milliseconds) {
  throw Error(ErrorKind::invalid_config, "split_mpi_backend: this build has no Open MPI");
}

std::unique_ptr<Backend> make_mpi_backend(int rank, int, std::chrono::milliseconds) {
  throw Error(ErrorKind::invalid_config,
              "RINGFUSE_BACKEND=mpi: this build has no Open MPI; rebuild with libopenmpi-dev "
              "installed, or use RINGFUSE_BACKEND=auto or native",
              rank);
}

#endif

}  // namespace ringfuse::backend
