// Ranks as threads of this process (Gloo's base_test.h pattern): every rank is a thread that
// builds a real transport (TCP mesh on loopback, or shared memory) over one in-memory store,
// runs the algorithm under test and checks its own result. The fast inner loop for anyone
// touching comm/src/algo/.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rendezvous/memory_store.hpp"
#include "ringfuse/context.hpp"
#include "transport/tcp_peer_wait.hpp"
#include "transport/transport.hpp"

namespace ringfuse::inproc {

/// What a test asks of a transport; connect_transport() turns it into the transports' options.
struct TransportSpec {
  TransportKind kind = TransportKind::tcp;  // tcp or shm
  std::size_t window_bytes = 0;             // shm: a SharedWindow of this many bytes per rank
  int streams = 1;                          // tcp: connections per peer (RINGFUSE_SOCKETS_PER_PEER)
  bool large_waits_sleep = false;           // shm: RINGFUSE_SHM_LARGE_WAIT=sleep
  std::size_t cross_memory_min_bytes = 0;   // shm: offer the peers' memory from this size; 0 no
  // tcp: when a rank waiting for a peer on this host checks before it sleeps
  transport::PeerWaitMode peer_wait = transport::PeerWaitMode::when_cpus_spare;
};

/// The one place the tests build transports, so that changes to the transports' options or
/// connection set-up touch only this function. Collective over the `size` ranks that pass the
/// same `key_prefix`. A world of one gets the SelfTransport, as in a Context.
std::unique_ptr<transport::Transport> connect_transport(int rank, int size,
                                                        rendezvous::Store& store,
                                                        const std::string& key_prefix,
                                                        const TransportSpec& spec);

/// One rank's view of the test: its number, the shared store, and where it reports mismatches.
class Rank {
 public:
  Rank(int rank, int size, rendezvous::Store& store, std::string key_prefix)
      : rank_(rank), size_(size), store_(store), key_prefix_(std::move(key_prefix)) {}

  int rank() const { return rank_; }
  int size() const { return size_; }

  /// This rank's transport of the whole world.
  std::unique_ptr<transport::Transport> connect(const TransportSpec& spec) {
    return connect(rank_, size_, "world", spec);
  }
  /// This rank's transport of a sub-world (as `rank` of `size`), which every member names by
  /// the same `channel`; distinct sub-worlds need distinct channels.
  std::unique_ptr<transport::Transport> connect(int rank, int size, const std::string& channel,
                                                const TransportSpec& spec);

  /// Records the outcome of one check; `what` (the case and the first wrong element) is kept
  /// for the report when `ok` is false.
  void expect(bool ok, const std::string& what);
  int checks() const { return checks_; }
  const std::vector<std::string>& mismatches() const { return mismatches_; }
  int mismatch_count() const { return mismatch_count_; }

 private:
  int rank_;
  int size_;
  rendezvous::Store& store_;
  std::string key_prefix_;
  int checks_ = 0;
  int mismatch_count_ = 0;
  std::vector<std::string> mismatches_;  // the first few
};

/// Runs `body` for every rank of a world of `size` on its own thread, joins them all, and adds
/// a test failure for each rank that threw (naming it and what it threw), for each mismatch
/// the ranks recorded, and for a rank that checked nothing. Each run gets its own store and
/// key prefix (job id), so shared-memory names never clash between runs or test processes.
/// The transports bound every wait; should a rank still not finish by `deadline`, the ranks
/// that did not are printed and the process exits (a thread cannot be cancelled safely).
void run_ranks(int size, const std::function<void(Rank&)>& body,
               std::chrono::seconds deadline = std::chrono::seconds(120));

}  // namespace ringfuse::inproc
