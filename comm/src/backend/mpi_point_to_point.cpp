#include <chrono>
#include <climits>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "backend/mpi_backend.hpp"
#include "core/errors.hpp"
#include "ringfuse/error.hpp"

#ifdef RINGFUSE_HAVE_MPI
#include <mpi.h>
#endif

namespace ringfuse::backend {

#ifdef RINGFUSE_HAVE_MPI

namespace {

std::string peer_text(int peer) {
  return peer == kAnySource ? std::string("any rank") : fmt::format("rank {}", peer);
}

class MpiPointToPoint final : public p2p::Channel {
 public:
  MpiPointToPoint(int rank, int size, std::chrono::milliseconds timeout)
      : rank_(rank), size_(size), timeout_(timeout) {
    if (MPI_Comm_dup(MPI_COMM_WORLD, &comm_) != MPI_SUCCESS) {
      throw core::rank_error(ErrorKind::system, rank_, "point-to-point: MPI_Comm_dup failed");
    }
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  }

  ~MpiPointToPoint() override {
    int finalised = 0;
    MPI_Finalized(&finalised);
    if (!finalised && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
  }

  const char* name() const override { return "mpi"; }

  std::vector<RecvStatus> run(std::span<const P2POp> ops) override {
    for (const auto& op : ops) validate(op);
    std::vector<MPI_Request> requests(ops.size(), MPI_REQUEST_NULL);
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const P2POp& op = ops[i];
      const int bytes = static_cast<int>(op.count * element_size(op.type));
      const int rc =
          op.kind == P2POp::Kind::send
              ? MPI_Isend(op.data, bytes, MPI_BYTE, op.peer, op.tag, comm_, &requests[i])
              : MPI_Irecv(op.data, bytes, MPI_BYTE,
                          op.peer == kAnySource ? MPI_ANY_SOURCE : op.peer,
                          op.tag == kAnyTag ? MPI_ANY_TAG : op.tag, comm_, &requests[i]);
      if (rc != MPI_SUCCESS) {
        abandon(requests);
        fail(rc, op);
      }
    }
    std::vector<MPI_Status> statuses(ops.size());
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    for (unsigned round = 0;; ++round) {
      int flag = 0;
      const int rc = MPI_Testall(static_cast<int>(requests.size()), requests.data(), &flag,
                                 statuses.data());
      if (rc == MPI_ERR_IN_STATUS) {
        for (std::size_t i = 0; i < ops.size(); ++i) {
          const int error = statuses[i].MPI_ERROR;
          if (error != MPI_SUCCESS && error != MPI_ERR_PENDING) {
            abandon(requests);
            fail(error, ops[i]);
          }
        }
      } else if (rc != MPI_SUCCESS) {
        abandon(requests);
        fail(rc, ops.front());
      }
      if (flag) break;
      if (std::chrono::steady_clock::now() > deadline) {
        std::string pending;
        for (std::size_t i = 0; i < ops.size(); ++i) {
          if (requests[i] == MPI_REQUEST_NULL) continue;
          if (!pending.empty()) pending += ", ";
          pending += fmt::format("{} {} ({})", ops[i].kind == P2POp::Kind::send ? "send to" : "recv from",
                                 peer_text(ops[i].peer), ops[i].tag == kAnyTag ? std::string("any tag") : fmt::format("tag {}", ops[i].tag));
        }
        abandon(requests);
        throw core::error_at(ErrorKind::timeout, rank_, ops.front().peer,
                             "point-to-point (mpi): not finished after {} s: {}; is the peer "
                             "posting the matching call?",
                             timeout_.count() / 1000.0, pending);
      }
      // Spin briefly (latency), then yield the core to the peer on this host.
      if (round > 1000) std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    std::vector<RecvStatus> received;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      if (ops[i].kind != P2POp::Kind::recv) continue;
      int bytes = 0;
      MPI_Get_count(&statuses[i], MPI_BYTE, &bytes);
      received.push_back(RecvStatus{statuses[i].MPI_SOURCE, statuses[i].MPI_TAG,
                                    static_cast<std::size_t>(bytes) / element_size(ops[i].type)});
    }
    return received;
  }

 private:
  void validate(const P2POp& op) const {
    const bool recv = op.kind == P2POp::Kind::recv;
    if (!(recv && op.peer == kAnySource) && (op.peer < 0 || op.peer >= size_)) {
      throw core::rank_error(ErrorKind::invalid_argument, rank_,
                             "{}: peer {} is not a rank of this world of {}",
                             recv ? "recv" : "send", op.peer, size_);
    }
    if (op.tag < 0 && !(recv && op.tag == kAnyTag)) {
      throw core::rank_error(ErrorKind::invalid_argument, rank_, "{} {}: tag {} is negative",
                             recv ? "recv from" : "send to", peer_text(op.peer), op.tag);
    }
    if (op.count * element_size(op.type) > INT_MAX) {
      throw core::rank_error(ErrorKind::invalid_argument, rank_,
                             "{} {}: more than 2^31-1 bytes; use the native backend",
                             recv ? "recv from" : "send to", peer_text(op.peer));
    }
  }

  /// Cancels what is still pending, so nothing lands in the caller's buffers later.
  void abandon(std::vector<MPI_Request>& requests) const {
    for (auto& request : requests) {
      if (request == MPI_REQUEST_NULL) continue;
      MPI_Cancel(&request);
      MPI_Request_free(&request);
    }
  }

  [[noreturn]] void fail(int rc, const P2POp& op) const {
    char text[MPI_MAX_ERROR_STRING] = {};
    int length = 0;
    MPI_Error_string(rc, text, &length);
    int error_class = 0;
    MPI_Error_class(rc, &error_class);
    const bool recv = op.kind == P2POp::Kind::recv;
    if (error_class == MPI_ERR_TRUNCATE) {
      throw core::error_at(ErrorKind::invalid_argument, rank_, op.peer,
                           "recv from {} ({}): the message is longer than the {} bytes of the "
                           "receive buffer (MPI_ERR_TRUNCATE)",
                           peer_text(op.peer),
                           op.tag == kAnyTag ? std::string("any tag") : fmt::format("tag {}", op.tag),
                           op.count * element_size(op.type));
    }
    throw core::error_at(ErrorKind::peer_failure, rank_, op.peer,
                         "{} {} (tag {}) failed in MPI: {} (code {})",
                         recv ? "recv from" : "send to", peer_text(op.peer), op.tag,
                         std::string(text, static_cast<std::size_t>(length)), rc);
  }

  int rank_;
  int size_;
  std::chrono::milliseconds timeout_;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace

std::unique_ptr<p2p::Channel> make_mpi_point_to_point(int rank, int size,
                                                      std::chrono::milliseconds timeout) {
  if (!mpi_available()) {
    throw core::rank_error(ErrorKind::invalid_config, rank,
                           "RINGFUSE_BACKEND=mpi point-to-point needs MPI initialised (a world "
                           "started by plain mpirun)");
  }
  return std::make_unique<MpiPointToPoint>(rank, size, timeout);
}

#else

std::unique_ptr<p2p::Channel> make_mpi_point_to_point(int rank, int, std::chrono::milliseconds) {
  throw core::rank_error(ErrorKind::invalid_config, rank,
                         "RINGFUSE_BACKEND=mpi: this build has no Open MPI; rebuild with "
                         "libopenmpi-dev installed, or use RINGFUSE_BACKEND=auto or native");
}

#endif

}  // namespace ringfuse::backend
