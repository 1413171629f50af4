// Ringfuse inside an existing MPI program: the program keeps its own MPI (initialised first,
// with MPI_THREAD_MULTIPLE) and Ringfuse bootstraps its world through it.
// Run: mpirun -np 3 ./mpi_embedded
#include <mpi.h>

#include <cstdio>
#include <vector>

#include <ringfuse/ringfuse.hpp>

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  int status = 0;
  {
    // Sees mpirun's OMPI_COMM_WORLD_* and MPI already running: rank 0 serves the rendezvous
    // store and MPI_Bcast tells the others where.
    auto ctx = ringfuse::init();

    std::vector<double> ours(100000), theirs(100000);
    for (std::size_t i = 0; i < ours.size(); ++i) ours[i] = theirs[i] = rank + 0.5 * i;
    ctx->allreduce(ours.data(), ours.size(), ringfuse::DataType::f64, ringfuse::ReduceOp::sum);
    MPI_Allreduce(MPI_IN_PLACE, theirs.data(), static_cast<int>(theirs.size()), MPI_DOUBLE,
                  MPI_SUM, MPI_COMM_WORLD);

    const bool agree = ours == theirs;  // small integers and halves: exact in any order
    std::printf("rank %d: Ringfuse and MPI %s\n", rank, agree ? "agree" : "DISAGREE");
    status = agree ? 0 : 1;
  }  // the Context goes before MPI_Finalize, which stays the program's
  MPI_Finalize();
  return status;
}
