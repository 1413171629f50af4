// One enqueued collective as the engine thread sees it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <utility>

#include "engine/fingerprint.hpp"
#include "engine/work_state.hpp"

namespace ringfuse::engine {

using Clock = std::chrono::steady_clock;

struct Request {
  std::uint64_t seq = 0;  // this rank's collective number, 1, 2, ...
  Fingerprint fp;
  void* data = nullptr;        // in-place tensor, or the input
  void* output = nullptr;      // alltoall / reducescatter output
  OutputAllocator allocate;    // allgather
  std::shared_ptr<WorkState> work;
  Clock::time_point enqueued;
  bool join = false;           // a join() marker, not a collective (seq 0)

  /// Exchanges everything, the name's and shape's memory included. The queue and the table
  /// of outstanding collectives swap requests instead of moving them, so that the memory of a
  /// completed request's name and shape comes back to the callers' side to be filled again
  /// (issue 18: no allocation, and no free on the engine thread, per tensor per step).
  friend void swap(Request& a, Request& b) noexcept {
    using std::swap;
    swap(a.seq, b.seq);
    swap(a.fp, b.fp);
    swap(a.data, b.data);
    swap(a.output, b.output);
    swap(a.allocate, b.allocate);
    swap(a.work, b.work);
    swap(a.enqueued, b.enqueued);
    swap(a.join, b.join);
  }
};
// A field added to Request must be swapped above, and written where a recycled request is
// filled (EngineImpl::allreduce_view), too; then update this size.
#if defined(__GLIBCXX__) && defined(__x86_64__)
static_assert(sizeof(Request) == 200);
#endif

}  // namespace ringfuse::engine
