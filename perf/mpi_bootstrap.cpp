#include "mpi_bootstrap.hpp"

#include <array>
#include <cstdlib>
#include <random>

#include <fmt/format.h>

#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"

#ifdef RINGFUSE_PERF_HAVE_MPI
#include <mpi.h>
#endif

namespace ringfuse::perf {
namespace {

bool launched_by_mpirun() {
  // ringfuse-run's variables win: a ringfuse-run job is never an MPI job here.
  return std::getenv("RINGFUSE_RANK") == nullptr && std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
}

// A fresh secret per mpirun job, so the loopback store refuses every other process.
std::string random_secret() {
  std::random_device device;
  std::string secret;
  for (int i = 0; i < 32; ++i) secret += "0123456789abcdef"[device() % 16];
  return secret;
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

}  // namespace

struct Launch::StoreServerHolder {
  std::unique_ptr<rendezvous::TcpStoreServer> server;
};

std::unique_ptr<Launch> Launch::start(int& argc, char**& argv,
                                      std::optional<BackendKind> backend) {
  std::unique_ptr<Launch> launch(new Launch());
  Options options = options_from_environment();
  if (backend) options.backend = *backend;
  if (!launched_by_mpirun()) {
    if (options.backend == BackendKind::mpi) {
      throw Error(ErrorKind::invalid_config,
                  "--backend mpi measures the library's MPI backend, which needs a world started "
                  "by mpirun: run `mpirun --allow-run-as-root --oversubscribe -np N "
                  "ringfuse-perf ... --backend mpi`");
    }
    launch->context_ = init();
    const WorldSpec& w = launch->context_->world();
    launch->launcher_ = std::getenv("RINGFUSE_RANK") != nullptr ? "ringfuse-run" : w.source;
    launch->store_host_ = w.store_host;
    launch->store_port_ = w.store_port;
    launch->job_id_ = w.job_id;
    launch->job_secret_ = w.job_secret;
    launch->mpi_unavailable_ =
        "not launched by mpirun (run `mpirun --allow-run-as-root --oversubscribe -np N "
        "ringfuse-perf ...` to measure Open MPI)";
    (void)argc;
    (void)argv;
    return launch;
  }
#ifdef RINGFUSE_PERF_HAVE_MPI
  // FUNNELED: only the main thread calls MPI; the library's own threads never do.
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  launch->mpi_ = true;
  launch->launcher_ = "mpirun";
  int rank = 0;
  int size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  // Loopback: this bootstrap serves one host (the machine the sweeps run on). Port 0 lets the
  // kernel pick a free port, which is why it has to travel to the other ranks over MPI.
  int port = 0;
  std::array<char, 33> secret{};
  launch->server_ = std::make_unique<StoreServerHolder>();
  if (rank == 0) {
    const std::string s = random_secret();
    std::copy(s.begin(), s.end(), secret.begin());
    launch->server_->server =
        std::make_unique<rendezvous::TcpStoreServer>("127.0.0.1", 0, std::string(secret.data()));
    port = launch->server_->server->port();
  }
  MPI_Bcast(&port, 1, MPI_INT, 0, MPI_COMM_WORLD);
  MPI_Bcast(secret.data(), static_cast<int>(secret.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  WorldSpec world;
  world.rank = rank;
  world.size = size;
  world.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", rank);
  world.local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", size);
  world.store_host = "127.0.0.1";
  world.store_port = static_cast<std::uint16_t>(port);
  world.job_id = fmt::format("perf-mpi-{}", port);  // the port is unique while the job lives
  world.job_secret = secret.data();
  world.source = "mpirun (ringfuse-perf bootstrap)";
  // The MPI backend needs the Context's own MPI session (MPI is initialised already, so it
  // only shares the Context's store address over MPI; ours above then goes unused).
  world.mpi_bootstrap = options.backend == BackendKind::mpi;
  launch->store_host_ = world.store_host;
  launch->store_port_ = world.store_port;
  launch->job_id_ = world.job_id;
  launch->job_secret_ = world.job_secret;
  launch->context_ = init(world, options);
  return launch;
#else
  throw Error(ErrorKind::invalid_config,
              "launched by mpirun, but ringfuse-perf was built without MPI (install "
              "libopenmpi-dev and reconfigure), so it cannot learn its rank; use ringfuse-run");
#endif
}

Launch::~Launch() {
  context_.reset();
#ifdef RINGFUSE_PERF_HAVE_MPI
  if (mpi_) {
    // Every rank has closed its store connection before rank 0 stops serving.
    MPI_Barrier(MPI_COMM_WORLD);
    server_.reset();
    MPI_Finalize();
  }
#endif
}

}  // namespace ringfuse::perf
