// MixedTransport's split step (shared memory one way, TCP the other): the send runs on a helper
// thread, and its end is bounded by a deadline of its own, not only by the sending transport's
// no-progress timeout. Three ranks as threads of this process over real shared memory, real
// sockets on loopback and the in-memory store: ranks 0 and 1 share memory, rank 2 is reached
// over TCP, so rank 1's step "receive from 0, send to 2" is split.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rendezvous/memory_store.hpp"
#include "ringfuse/error.hpp"
#include "transport/mixed_transport.hpp"
#include "transport/tcp_mesh.hpp"

namespace {

using namespace std::chrono_literals;
using ringfuse::Error;
using ringfuse::transport::MixedTransport;
using ringfuse::transport::Transport;

constexpr std::size_t kRingBytes = std::size_t{64} << 10;
// More than loopback's socket buffers hold, so a send to a rank that does not read stalls.
constexpr std::size_t kMessageBytes = std::size_t{16} << 20;

// Rank `rank` of the three: ranks 0 and 1 on a MixedTransport sharing memory, rank 2 on TCP.
std::unique_ptr<Transport> connect(int rank, ringfuse::rendezvous::Store& store,
                                   const std::string& prefix,
                                   std::chrono::milliseconds op_timeout) {
  ringfuse::transport::MeshOptions mesh;
  mesh.advertise_host = "127.0.0.1";
  mesh.job_id = prefix;
  mesh.key_prefix = prefix;
  mesh.connect_timeout = 20s;
  mesh.op_timeout = op_timeout;
  if (rank == 2) return std::make_unique<ringfuse::transport::TcpMesh>(rank, 3, store, mesh);
  return std::make_unique<MixedTransport>(rank, 3, store, mesh, std::vector<int>{0, 1},
                                          kRingBytes);
}

std::string unique_prefix(const char* test) {
  return "ringfuse/mixed-" + std::to_string(::getpid()) + "-" + test + "/";
}

// Connects the three ranks concurrently (set-up is collective).
std::vector<std::unique_ptr<Transport>> connect_all(ringfuse::rendezvous::Store& store,
                                                    const std::string& prefix,
                                                    std::chrono::milliseconds op_timeout) {
  std::vector<std::future<std::unique_ptr<Transport>>> pending;
  for (int rank = 0; rank < 3; ++rank) {
    pending.push_back(std::async(std::launch::async,
                                 [&, rank] { return connect(rank, store, prefix, op_timeout); }));
  }
  std::vector<std::unique_ptr<Transport>> ranks;
  for (auto& transport : pending) ranks.push_back(transport.get());
  return ranks;
}

// Rank 1's split step: receives kMessageBytes from rank 0 while it sends kMessageBytes to
// rank 2; returns what it threw (empty when it succeeded).
std::future<std::string> split_step_of_rank_1(Transport& rank1) {
  return std::async(std::launch::async, [&rank1]() -> std::string {
    std::vector<std::byte> out(kMessageBytes, std::byte{1});
    std::vector<std::byte> in(kMessageBytes);
    rank1.set_operation("allreduce #7 u8[16777216] sum");
    try {
      rank1.send_recv(2, out.data(), out.size(), 0, in.data(), in.size());
    } catch (const Error& error) {
      return error.what();
    }
    return {};
  });
}

// Rank 2 takes the bytes, but slowly (64 KiB every 20 ms: about 5 s for the message, with
// progress all along, so TCP's no-progress timeout never fires): the step must still end at
// its own deadline, the operation timeout after its receive ended, with an error that names
// this rank, the peer and the operation.
TEST(MixedTransportSplitStep, ASendToAPeerThatReadsTooSlowlyEndsAtItsDeadline) {
  ringfuse::rendezvous::MemoryStore store;
  auto ranks = connect_all(store, unique_prefix("slow"), 2s);
  std::atomic<bool> stop_reading{false};
  auto reader = std::async(std::launch::async, [&] {
    std::vector<std::byte> piece(64 << 10);
    for (std::size_t got = 0; got < kMessageBytes && !stop_reading; got += piece.size()) {
      ranks[2]->recv(1, piece.data(), piece.size());
      std::this_thread::sleep_for(20ms);
    }
  });
  auto step = split_step_of_rank_1(*ranks[1]);
  std::vector<std::byte> from0(kMessageBytes, std::byte{2});
  ranks[0]->send(1, from0.data(), from0.size());
  ASSERT_EQ(step.wait_for(4s), std::future_status::ready)
      << "rank 1's step has not ended 2 s after the operation timeout";
  const std::string message = step.get();
  EXPECT_NE(message.find("rank 1: allreduce #7 u8[16777216] sum: the send to rank 2 over tcp "
                         "has not finished 2 s after this step's receive did"),
            std::string::npos)
      << message;
  stop_reading = true;
  reader.wait();
  ranks[2].reset();  // rank 1's send under way ends on the closed connection
}

// Rank 0 leaves while rank 1 receives from it, and rank 2, which rank 1 is sending to, has
// stopped reading: rank 1 must report rank 0 at once, not after its send to rank 2 has run
// into the operation timeout (30 s here).
TEST(MixedTransportSplitStep, AFailedReceiveIsReportedWithoutWaitingForTheSend) {
  ringfuse::rendezvous::MemoryStore store;
  auto ranks = connect_all(store, unique_prefix("left"), 30s);
  auto step = split_step_of_rank_1(*ranks[1]);
  std::this_thread::sleep_for(200ms);  // rank 1's send to rank 2 fills the socket buffers
  ranks[0].reset();
  const auto status = step.wait_for(10s);
  EXPECT_EQ(status, std::future_status::ready)
      << "rank 1 still waits for its send to rank 2 10 s after rank 0 left";
  ranks[2].reset();  // rank 1's send under way ends on the closed connection
  const std::string message = step.get();
  EXPECT_NE(message.find("rank 1: "), std::string::npos) << message;
  EXPECT_NE(message.find("rank 0"), std::string::npos) << message;
  // Later calls refuse while the send is under way or report the failure: never a hang.
  std::vector<std::byte> byte(1);
  EXPECT_THROW(ranks[1]->send_recv(2, byte.data(), 1, 0, byte.data(), 1), Error);
}

}  // namespace
