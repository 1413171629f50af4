// The engine's point-to-point path (Engine::send/recv): a thread of its own over the engine's
// own messenger (p2p/messenger.hpp). No negotiation and no uninvolved rank: a posted op
// completes its Work as soon as its bytes have moved. Every queued op is posted at once and
// progressed with the others, so an irecv waiting for its message never holds back an isend
// queued after it; the messenger keeps the order per (peer, tag).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "engine/work_state.hpp"
#include "p2p/messenger.hpp"
#include "ringfuse/engine.hpp"

namespace ringfuse::engine {

class P2PWorker {
 public:
  explicit P2PWorker(std::unique_ptr<p2p::Messenger> messenger);
  /// Fails the Works still pending (the engine is shutting down), then joins the thread.
  ~P2PWorker();

  /// Refuse invalid_argument at once (bad peer or tag, device memory); else queue the op.
  Work send(const TensorView& tensor, int peer, int tag);
  Work recv(const TensorView& tensor, int peer, int tag);

 private:
  struct Queued {
    bool send;
    TensorView tensor;
    int peer;
    int tag;
    std::shared_ptr<WorkState> work;
  };
  Work enqueue(bool send, const TensorView& tensor, int peer, int tag);
  void run();

  std::unique_ptr<p2p::Messenger> messenger_;  // the worker thread's, once it runs
  int rank_;
  int size_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> queue_;
  bool stop_ = false;
  std::unordered_map<p2p::OpId, std::shared_ptr<WorkState>> posted_;  // worker thread only
  std::thread thread_;
};

}  // namespace ringfuse::engine
