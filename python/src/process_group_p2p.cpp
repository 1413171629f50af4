#include "process_group_p2p.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include "core/errors.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::python {
namespace {

/// One transfer: its state is the engine Work's, read on demand (no completion callback, so
/// the engine thread never holds the last reference to a tensor, whose release may need the
/// GIL).
class TransferWork final : public ::c10d::Work {
 public:
  TransferWork(int rank, ::c10d::OpType type, at::Tensor tensor, ringfuse::Work transfer, int peer,
               std::chrono::milliseconds default_timeout, std::string what, std::string group)
      : Work(rank, type),
        tensor_(std::move(tensor)),
        transfer_(std::move(transfer)),
        peer_(peer),
        default_timeout_(default_timeout),
        what_(std::move(what)),
        group_(std::move(group)) {}

  bool isCompleted() override { return transfer_.test(); }

  bool isSuccess() const override { return transfer_.test() && !failure(); }

  std::exception_ptr exception() const override { return failure(); }

  int sourceRank() const override { return transfer_.source_rank(); }

  std::vector<at::Tensor> result() override { return {tensor_}; }

  bool wait(std::chrono::milliseconds timeout) override {
    // kNoTimeout still has a deadline: the engine fails a transfer that makes no progress for
    // the group's timeout, so twice that is never reached by a live one.
    const auto limit = timeout == ::kNoTimeout ? default_timeout_ * 2 : timeout;
    bool finished = false;
    try {
      finished = transfer_.wait_for(limit);
    } catch (const Error& failure) {
      throw in_group(failure);  // the transfer's own failure
    }
    if (!finished) {
      throw core::error_at(ErrorKind::timeout, rank_, peer_,
                           "{}: not finished after {} ms (Work.wait timeout); the peer may not "
                           "have posted the matching {} yet",
                           what_, limit.count(),
                           opType_ == ::c10d::OpType::SEND ? "recv" : "send");
    }
    return true;
  }

  void synchronize() override {}

 private:
  std::exception_ptr failure() const {
    if (!transfer_.test()) return nullptr;
    try {
      transfer_.wait(std::chrono::milliseconds(0));
      return nullptr;
    } catch (const Error& failure) {
      return std::make_exception_ptr(in_group(failure));
    } catch (...) {
      return std::current_exception();
    }
  }

  /// The engine's error (it names global ranks), saying which group too: "rank 2: new_group(
  /// [1, 2]): point-to-point: ...".
  Error in_group(const Error& failure) const {
    if (group_.empty()) return failure;
    std::string message = failure.what();
    const auto prefix = fmt::format("rank {}: ", rank_);
    const auto at = message.starts_with(prefix) ? prefix.size() : 0;
    message.insert(at, group_ + ": ");
    Error named(failure.kind(), std::move(message), failure.rank(), failure.peer());
    named.in_collective(failure.sequence(), failure.backend());
    return named;
  }

  at::Tensor tensor_;
  ringfuse::Work transfer_;
  int peer_;
  std::chrono::milliseconds default_timeout_;
  std::string what_;
  std::string group_;  // the sub-group's label; empty for the world group
};

TensorView bytes_of(const at::Tensor& tensor) {
  TensorView view;
  view.data = tensor.data_ptr();
  view.dtype = DataType::u8;  // the bytes travel as they are, whatever the dtype (as Gloo's)
  view.shape = {static_cast<std::int64_t>(tensor.nbytes())};
  return view;
}

/// " (new_group([1, 2]))" for a sub-group, whose Context is labelled; empty for the world.
std::string group_suffix(const Context& context) {
  return context.label() == "world" ? std::string() : fmt::format(" ({})", context.label());
}

std::string group_label(const Context& context) {
  return context.label() == "world" ? std::string() : context.label();
}

/// Names the peer by its global rank: users know that one, also in a sub-group.
std::string describe(const Context& context, const char* call, const at::Tensor& tensor, int peer,
                     int tag) {
  const std::string who =
      peer == kAnySource ? "any rank" : fmt::format("rank {}", context.global_rank(peer));
  return fmt::format("ProcessGroup ringfuse{}: {} of {}[{}] {} {} (tag {})", group_suffix(context),
                     call, c10::toString(tensor.scalar_type()), tensor.numel(),
                     std::string(call) == "send" ? "to" : "from", who, tag);
}

int global_peer(const Context& context, int peer) {
  return peer == kAnySource ? peer : context.global_rank(peer);
}

}  // namespace

PointToPoint::PointToPoint(Context& context, Engine& engine,
                           std::chrono::milliseconds op_timeout)
    : context_(context), engine_(engine), op_timeout_(op_timeout) {}

PointToPoint::~PointToPoint() = default;

void PointToPoint::check(const char* call, const at::Tensor& tensor, int peer, int tag) const {
  const auto refuse = [&](const std::string& why) {
    return core::error_at(ErrorKind::invalid_argument, context_.global_rank(context_.rank()),
                          Error::kNoRank, "ProcessGroup ringfuse{}: {}: {}", group_suffix(context_),
                          call, why);
  };
  if (!tensor.is_contiguous()) {
    throw refuse("the tensor is not contiguous; pass tensor.contiguous() (a receive fills "
                 "the tensor's own memory)");
  }
  const bool any_source = peer == kAnySource && std::string(call) != "send";
  if (!any_source && (peer < 0 || peer >= context_.size())) {
    throw refuse(fmt::format("peer rank {} is outside the group of {}", peer, context_.size()));
  }
  if (tag < 0) throw refuse(fmt::format("tag {} is negative; tags are >= 0", tag));
}

c10::intrusive_ptr<::c10d::Work> PointToPoint::send(const at::Tensor& tensor, int peer,
                                                    int tag) {
  check("send", tensor, peer, tag);
  auto transfer = engine_.send(bytes_of(tensor), peer, tag);
  return track(c10::make_intrusive<TransferWork>(
      context_.global_rank(context_.rank()), ::c10d::OpType::SEND, tensor, std::move(transfer),
      global_peer(context_, peer), op_timeout_, describe(context_, "send", tensor, peer, tag),
      group_label(context_)));
}

c10::intrusive_ptr<::c10d::Work> PointToPoint::recv(const at::Tensor& tensor, int peer,
                                                    int tag) {
  const auto type = peer == kAnySource ? ::c10d::OpType::RECVANYSOURCE : ::c10d::OpType::RECV;
  check("recv", tensor, peer, tag);
  auto transfer = engine_.recv(bytes_of(tensor), peer, tag);
  return track(c10::make_intrusive<TransferWork>(
      context_.global_rank(context_.rank()), type, tensor, std::move(transfer),
      global_peer(context_, peer), op_timeout_, describe(context_, "recv", tensor, peer, tag),
      group_label(context_)));
}

c10::intrusive_ptr<::c10d::Work> PointToPoint::track(c10::intrusive_ptr<::c10d::Work> work) {
  std::vector<c10::intrusive_ptr<::c10d::Work>> finished;  // released outside the lock
  std::lock_guard lock(in_flight_mutex_);
  auto done = std::stable_partition(in_flight_.begin(), in_flight_.end(),
                                    [](const auto& w) { return !w->isCompleted(); });
  finished.assign(std::make_move_iterator(done), std::make_move_iterator(in_flight_.end()));
  in_flight_.erase(done, in_flight_.end());
  in_flight_.push_back(work);
  return work;
}

}  // namespace ringfuse::python
