#include "context/mpi_bootstrap.hpp"

#include <unistd.h>

#include <array>
#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "rendezvous/auth.hpp"
#include "ringfuse/error.hpp"

#ifdef RINGFUSE_HAVE_MPI
#include <mpi.h>
#endif

namespace ringfuse::context {
namespace {

std::string hex(const std::string& bytes) {
  std::string text;
  for (unsigned char c : bytes) text += fmt::format("{:02x}", c);
  return text;
}

/// Fixed-size text fields, so one MPI_Bcast of a plain struct carries everything.
struct Rendezvous {
  std::array<char, 256> host{};
  std::array<char, 64> job_id{};
  std::array<char, 128> secret{};
  std::int32_t port = 0;
};

template <std::size_t N>
void copy_text(std::array<char, N>& out, const std::string& text) {
  std::strncpy(out.data(), text.c_str(), N - 1);
}

}  // namespace

#ifdef RINGFUSE_HAVE_MPI

MpiSession::MpiSession(WorldSpec& world) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    owns_mpi_ = true;
  }
  int rank = 0;
  int size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank != world.rank || size != world.size) {
    throw Error(ErrorKind::invalid_config,
                fmt::format("MPI says rank {} of {}, but OMPI_COMM_WORLD_* say rank {} of {}; "
                            "was this process started by a different mpirun?",
                            rank, size, world.rank, world.size),
                world.rank);
  }
  Rendezvous shared;
  if (rank == 0) {
    // One host: loopback; several: this host's name, which the other ranks resolve.
    const bool one_host = world.local_size == world.size;
    std::array<char, 256> hostname{};
    ::gethostname(hostname.data(), hostname.size() - 1);
    const std::string secret = hex(rendezvous::auth::random_nonce() + rendezvous::auth::random_nonce());
    store_ = std::make_unique<rendezvous::TcpStoreServer>(one_host ? "127.0.0.1" : "0.0.0.0", 0,
                                                          secret);
    copy_text(shared.host, one_host ? std::string("127.0.0.1") : std::string(hostname.data()));
    copy_text(shared.job_id, "mpirun-" + hex(rendezvous::auth::random_nonce()).substr(0, 16));
    copy_text(shared.secret, secret);
    shared.port = store_->port();
  }
  // The secret travels over MPI's own connections, which only this job's processes share.
  MPI_Bcast(&shared, sizeof(shared), MPI_BYTE, 0, MPI_COMM_WORLD);
  world.store_host = shared.host.data();
  world.store_port = static_cast<std::uint16_t>(shared.port);
  world.job_id = shared.job_id.data();
  world.job_secret = shared.secret.data();
  world.host_store = false;
}

MpiSession::~MpiSession() {
  store_.reset();
  if (owns_mpi_) {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised) MPI_Finalize();
  }
}

#else

MpiSession::MpiSession(WorldSpec& world) {
  throw Error(ErrorKind::invalid_config,
              "started by mpirun (OMPI_COMM_WORLD_* are set) without RINGFUSE_* or torchrun "
              "variables, but this build has no Open MPI to bootstrap through; rebuild with "
              "libopenmpi-dev installed, or launch with ringfuse-run",
              world.rank);
}

MpiSession::~MpiSession() = default;

#endif

}  // namespace ringfuse::context
