#include "mpi_peer.hpp"

#include <climits>

#ifdef RINGFUSE_PERF_HAVE_MPI
#include <fmt/format.h>
#include <mpi.h>

#include "core/combine.hpp"
#endif

namespace ringfuse::perf {

#ifdef RINGFUSE_PERF_HAVE_MPI
namespace {

// MPI has no 16-bit floating types; for collectives that only move bytes the bits travel as
// MPI_UINT16_T, and reductions over them are reported as unsupported.
MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::f16:
    case DataType::bf16: return MPI_UINT16_T;
    case DataType::f32: return MPI_FLOAT;
    case DataType::f64: return MPI_DOUBLE;
    case DataType::i8: return MPI_INT8_T;
    case DataType::u8: return MPI_UINT8_T;
    case DataType::i32: return MPI_INT32_T;
    case DataType::i64: return MPI_INT64_T;
    case DataType::i16: return MPI_INT16_T;
    case DataType::boolean: return MPI_C_BOOL;
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(ReduceOp op, DataType type) {
  if (type == DataType::boolean) {
    // MPI defines only the logical operators on MPI_C_BOOL.
    if (op == ReduceOp::bxor) return MPI_LXOR;
    return core::is_logical_and(op) ? MPI_LAND : MPI_LOR;
  }
  switch (op) {
    case ReduceOp::sum: return MPI_SUM;
    case ReduceOp::prod: return MPI_PROD;
    case ReduceOp::min: return MPI_MIN;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::band: return MPI_BAND;
    case ReduceOp::bor: return MPI_BOR;
    case ReduceOp::bxor: return MPI_BXOR;
    case ReduceOp::avg: break;
  }
  return MPI_OP_NULL;
}

class MpiPeer final : public Implementation {
 public:
  explicit MpiPeer(std::string name) : name_(std::move(name)) {}

  std::string name() const override { return name_; }
  std::string algo(const CaseSpec& /*spec*/) const override { return "ompi-default"; }

  std::string unsupported(const CaseSpec& spec) const override {
    if (spec.layout.count > static_cast<std::size_t>(INT_MAX)) return "count exceeds MPI's int";
    if (reduces(spec.collective)) {
      if (spec.type == DataType::f16 || spec.type == DataType::bf16) {
        return "MPI has no f16/bf16 reductions";
      }
      if (spec.op == ReduceOp::avg) return "MPI has no average operator";
      if (!is_defined(spec.type, spec.op)) {
        return fmt::format("{} of {} is not defined", to_string(spec.op), to_string(spec.type));
      }
    }
    return {};
  }

  void run(const CaseSpec& spec, Buffers& b) override {
    const Layout& l = spec.layout;
    const MPI_Datatype t = mpi_type(spec.type);
    const int count = static_cast<int>(l.count);
    const int block = static_cast<int>(l.block);
    switch (spec.collective) {
      case Collective::allreduce:
        MPI_Allreduce(MPI_IN_PLACE, b.output(), count, t, mpi_op(spec.op, spec.type),
                      MPI_COMM_WORLD);
        break;
      case Collective::broadcast: MPI_Bcast(b.output(), count, t, spec.root, MPI_COMM_WORLD); break;
      case Collective::allgather:
        MPI_Allgather(b.input(), block, t, b.output(), block, t, MPI_COMM_WORLD);
        break;
      case Collective::reducescatter:
        MPI_Reduce_scatter_block(b.input(), b.output(), block, t, mpi_op(spec.op, spec.type),
                                 MPI_COMM_WORLD);
        break;
      case Collective::alltoall:
        MPI_Alltoall(b.input(), block, t, b.output(), block, t, MPI_COMM_WORLD);
        break;
      case Collective::barrier: MPI_Barrier(MPI_COMM_WORLD); break;
    }
  }

  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }

 private:
  std::string name_;
};

}  // namespace

std::unique_ptr<Implementation> make_mpi_peer(std::string name) {
  return std::make_unique<MpiPeer>(std::move(name));
}

#else

std::unique_ptr<Implementation> make_mpi_peer(std::string /*name*/) { return nullptr; }

#endif

}  // namespace ringfuse::perf
