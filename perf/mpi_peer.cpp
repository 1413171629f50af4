#include "mpi_peer.hpp"

#include <climits>

#ifdef RINGFUSE_PERF_HAVE_MPI
#include <fmt/format.h>
#include <mpi.h>

#include "backend/mpi_types.hpp"
#endif

namespace ringfuse::perf {

#ifdef RINGFUSE_PERF_HAVE_MPI
namespace {

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
    const MPI_Datatype t = backend::mpi::datatype(spec.type);
    const int count = static_cast<int>(l.count);
    const int block = static_cast<int>(l.block);
    switch (spec.collective) {
      case Collective::allreduce:
        MPI_Allreduce(MPI_IN_PLACE, b.output(), count, t, backend::mpi::reduce_op(spec.type, spec.op),
                      MPI_COMM_WORLD);
        break;
      case Collective::broadcast: MPI_Bcast(b.output(), count, t, spec.root, MPI_COMM_WORLD); break;
      case Collective::allgather:
        MPI_Allgather(b.input(), block, t, b.output(), block, t, MPI_COMM_WORLD);
        break;
      case Collective::reducescatter:
        MPI_Reduce_scatter_block(b.input(), b.output(), block, t, backend::mpi::reduce_op(spec.type, spec.op),
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
