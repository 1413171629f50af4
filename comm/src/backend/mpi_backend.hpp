// The MPI data plane: every collective through Open MPI's own calls, on a private duplicate of
// MPI_COMM_WORLD. Only available when the world was bootstrapped by plain `mpirun` (the
// Context's MpiSession has initialised MPI, or found it initialised by the program).
//
// f16/bf16 have no MPI type: they travel as a 2-byte contiguous type and reduce through
// user-defined MPI_Ops that call reduce::reduce_into (the same kernels as the native backend).
// avg is sum followed by reduce::divide, as in the native backend.
//
// Threading: MPI is called only from the thread that calls the Context's blocking collectives
// (the engine keeps its own native channel), so MPI_THREAD_SERIALIZED suffices; MPI is
// initialised with MPI_THREAD_MULTIPLE requested anyway, for programs that embed us.
// Deadlines: MPI has no per-call timeout, so RINGFUSE_TIMEOUT_S does not bound an MPI
// collective; a dead rank is handled by mpirun, which stops the whole job.
#pragma once

#include <memory>

#include "backend/backend.hpp"

namespace ringfuse::backend {

/// Duplicates MPI_COMM_WORLD (collective over every rank). Throws Error(invalid_config) when
/// this build has no MPI or MPI is not initialised.
std::unique_ptr<Backend> make_mpi_backend(int rank, int size);

/// True when this build has MPI and MPI_Init has been called (and not yet finalised).
bool mpi_available();

}  // namespace ringfuse::backend
