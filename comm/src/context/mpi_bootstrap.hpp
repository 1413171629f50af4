// Plain `mpirun` start-up: no launcher hosts a store, so rank 0 starts one and MPI carries its
// address, a fresh job id and a fresh job secret to every rank (Horovod's MPI bootstrap).
// The user's own MPI keeps working: MPI is initialised here only if the program has not done
// so already (with MPI_THREAD_MULTIPLE requested), and then finalised when the Context goes.
#pragma once

#include <memory>

#include "rendezvous/tcp_store.hpp"
#include "ringfuse/context.hpp"

namespace ringfuse::context {

class MpiSession {
 public:
  /// Initialises MPI if needed, checks that MPI agrees with `world`, and fills in its store
  /// address, job id and secret; on rank 0 it also starts the store. Throws
  /// Error(invalid_config) when this build has no MPI.
  explicit MpiSession(WorldSpec& world);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owns_mpi_ = false;
  std::unique_ptr<rendezvous::TcpStoreServer> store_;
};

}  // namespace ringfuse::context
