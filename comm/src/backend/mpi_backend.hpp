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
// Deadlines: MPI has no per-call timeout and cannot cancel a collective, so a watchdog thread
// (backend/collective_watchdog.hpp) bounds each one by RINGFUSE_TIMEOUT_S: past it, the rank
// logs which collective stalled and calls MPI_Abort, and mpirun ends the job with an error
// instead of a hang. A dead rank is also noticed by mpirun itself, which stops the job.
#pragma once

#include <chrono>
#include <memory>

#include "backend/backend.hpp"

namespace ringfuse::backend {

/// Duplicates MPI_COMM_WORLD (collective over every rank). A collective still blocked after
/// `timeout` aborts the MPI job. Throws Error(invalid_config) when this build has no MPI or MPI
/// is not initialised.
std::unique_ptr<Backend> make_mpi_backend(int rank, int size, std::chrono::milliseconds timeout);

/// MPI_Comm_split of `parent` (a backend make_mpi_backend or this made), collective over every
/// rank of the parent: the backend of the ranks with `color`, ordered by key; null for a
/// negative color (MPI_UNDEFINED).
std::unique_ptr<Backend> split_mpi_backend(Backend& parent, int color, int key,
                                           std::chrono::milliseconds timeout);

/// True when this build has MPI and MPI_Init has been called (and not yet finalised).
bool mpi_available();

}  // namespace ringfuse::backend

#include "p2p/channel.hpp"

namespace ringfuse::backend {

/// Point-to-point over MPI (RINGFUSE_BACKEND=mpi): MPI_Isend/MPI_Irecv (MPI_ANY_SOURCE,
/// MPI_ANY_TAG) on its own duplicate of MPI_COMM_WORLD (collective: every rank makes it at
/// init), completed by an MPI_Testall loop bounded by `timeout` (the pending requests are
/// cancelled and an Error of kind timeout names their peers). Throws like make_mpi_backend.
std::unique_ptr<p2p::Channel> make_mpi_point_to_point(int rank, int size,
                                                      std::chrono::milliseconds timeout);

}  // namespace ringfuse::backend
