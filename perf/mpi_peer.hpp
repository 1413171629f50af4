// Peer: Open MPI's own collectives (MPI_Allreduce, MPI_Bcast, MPI_Allgather,
// MPI_Reduce_scatter_block, MPI_Alltoall, MPI_Barrier) in its default tuning.
#pragma once

#include <memory>
#include <string>

#include "implementation.hpp"

namespace ringfuse::perf {

/// Requires MPI to be initialised (Launch::mpi_ready()). `name` labels the rows ("mpi", or
/// "mpi+malloc" for the pass with glibc tuned).
std::unique_ptr<Implementation> make_mpi_peer(std::string name);

}  // namespace ringfuse::perf
