// How ringfuse-perf joins its world. Under mpirun the ranks are MPI processes (needed for the
// mpi peer): MPI_Init_thread, rank 0 serves a rendezvous store on loopback and broadcasts its
// port over MPI, and the Context is built from an explicit WorldSpec. Under ringfuse-run (or
// torchrun) it is plain ringfuse::init(). The library's own MPI bootstrap comes later; this one
// lives here so the benchmark does not depend on it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ringfuse/context.hpp"

namespace ringfuse::perf {

class Launch {
 public:
  /// Starts MPI if launched by mpirun, then connects the Context; `backend`, when given,
  /// overrides RINGFUSE_BACKEND for our collectives (mpi needs mpirun).
  static std::unique_ptr<Launch> start(int& argc, char**& argv,
                                       std::optional<BackendKind> backend = std::nullopt);
  ~Launch();
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  Context& context() { return *context_; }
  const std::string& launcher() const { return launcher_; }  // "mpirun" | "ringfuse-run" | ...
  bool mpi_ready() const { return mpi_; }
  /// Why the mpi peer cannot run here (empty when it can).
  const std::string& mpi_unavailable() const { return mpi_unavailable_; }
  /// The rendezvous store every rank can reach (Gloo's store adapter uses it too).
  const std::string& store_host() const { return store_host_; }
  std::uint16_t store_port() const { return store_port_; }
  const std::string& job_id() const { return job_id_; }
  /// What every store connection must prove (WorldSpec::job_secret).
  const std::string& job_secret() const { return job_secret_; }

 private:
  Launch() = default;
  struct StoreServerHolder;
  std::unique_ptr<StoreServerHolder> server_;
  std::unique_ptr<Context> context_;
  std::string launcher_;
  bool mpi_ = false;
  std::string mpi_unavailable_;
  std::string store_host_;
  std::uint16_t store_port_ = 0;
  std::string job_id_;
  std::string job_secret_;
};

}  // namespace ringfuse::perf
