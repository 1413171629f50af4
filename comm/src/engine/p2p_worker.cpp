#include "engine/p2p_worker.hpp"

#include <fmt/format.h>

#include "core/errors.hpp"
#include "core/thread_name.hpp"

namespace ringfuse::engine {

P2PWorker::P2PWorker(std::unique_ptr<p2p::Messenger> messenger)
    : messenger_(std::move(messenger)), rank_(messenger_->rank()), size_(messenger_->size()) {
  thread_ = std::thread([this] {
    core::name_this_thread("rf-p2p");
    run();
  });
}

P2PWorker::~P2PWorker() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Work P2PWorker::send(const TensorView& tensor, int peer, int tag) {
  return enqueue(true, tensor, peer, tag);
}

Work P2PWorker::recv(const TensorView& tensor, int peer, int tag) {
  return enqueue(false, tensor, peer, tag);
}

Work P2PWorker::enqueue(bool send, const TensorView& tensor, int peer, int tag) {
  const char* what = send ? "send to" : "recv from";
  const bool any_source = !send && peer == kAnySource;
  if (!any_source && (peer < 0 || peer >= size_)) {
    throw core::rank_error(ErrorKind::invalid_argument, rank_,
                           "engine: {} rank {}: not a rank of this world of {}", what, peer,
                           size_);
  }
  if (tag < 0 && !(!send && tag == kAnyTag)) {
    throw core::rank_error(ErrorKind::invalid_argument, rank_,
                           "engine: {} rank {}: tag {} is negative; tags are >= 0", what, peer,
                           tag);
  }
  if (tensor.device != Device::cpu) {
    throw core::rank_error(ErrorKind::invalid_argument, rank_,
                           "engine: {} rank {}: point-to-point takes host tensors only; copy "
                           "the CUDA tensor to host memory first",
                           what, peer);
  }
  if (tensor.data == nullptr && tensor.numel() > 0) {
    throw core::rank_error(ErrorKind::invalid_argument, rank_,
                           "engine: {} rank {}: the tensor's data is null", what, peer);
  }
  auto work = make_work_state();
  {
    std::lock_guard lock(mutex_);
    if (stop_) {
      throw core::rank_error(ErrorKind::invalid_argument, rank_,
                             "engine: {} rank {}: the engine is shutting down", what, peer);
    }
    queue_.push_back(Queued{send, tensor, peer, tag, work});
  }
  wake_.notify_one();
  return Work(work);
}

void P2PWorker::run() {
  std::vector<p2p::Completion> done;
  while (true) {
    std::deque<Queued> taken;
    {
      std::unique_lock lock(mutex_);
      if (posted_.empty()) wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) break;
      taken.swap(queue_);
    }
    for (auto& op : taken) {
      try {
        const std::size_t bytes = op.tensor.bytes();
        const p2p::OpId id =
            op.send ? messenger_->post_send(op.tensor.data, bytes, op.peer, op.tag)
                    : messenger_->post_recv(op.tensor.data, bytes, element_size(op.tensor.dtype),
                                            op.peer, op.tag);
        posted_.emplace(id, std::move(op.work));
      } catch (const Error& error) {
        op.work->complete(&error);
      }
    }
    if (posted_.empty()) continue;
    done.clear();
    try {
      // Short waits: a newly queued op must not sit behind a quiet connection for long.
      messenger_->progress(std::chrono::microseconds(500), done);
    } catch (const Error& error) {
      for (auto& [id, work] : posted_) work->complete(&error);
      posted_.clear();
      continue;
    }
    for (const auto& completion : done) {
      const auto found = posted_.find(completion.id);
      if (found == posted_.end()) continue;
      auto work = std::move(found->second);
      posted_.erase(found);
      if (completion.error) {
        work->complete(&*completion.error);
        continue;
      }
      {
        std::lock_guard lock(work->mutex);
        work->source_rank = completion.status.source;
      }
      work->complete(nullptr);
    }
  }
  const Error stopped = core::rank_error(ErrorKind::invalid_argument, rank_,
                                         "engine: point-to-point op abandoned: the engine shut "
                                         "down before it completed");
  for (auto& [id, work] : posted_) work->complete(&stopped);
  for (auto& op : queue_) op.work->complete(&stopped);
}

}  // namespace ringfuse::engine
