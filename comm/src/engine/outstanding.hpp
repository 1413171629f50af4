// The collectives this rank has taken from its queue and not yet completed, by sequence
// number: the engine thread's one table, which negotiation reads (fingerprints to announce)
// and execution drains (buffers to run on, Works to complete). Engine thread only.
//
// Sequence numbers are handed out consecutively (a join() only skips some), so the table is
// a window of slots indexed by `seq - base`: a look-up is an index, not a tree walk, and a
// request is swapped into a slot whose memory is reused, not into a node of its own. This is
// on every tensor's path several times a cycle (announce, release, execute, complete).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/request.hpp"

namespace ringfuse::engine {

class Outstanding {
 public:
  /// Takes `request` into the table. Swaps rather than moves: `request` comes back holding
  /// the storage (name, shape) of a request completed earlier, for the queue to fill again.
  void add(Request& request) {
    const auto seq = request.seq;
    if (live_ == 0) {  // keeps the slots and their requests' memory
      end_ = 0;
      head_ = 0;
      base_ = seq;
    } else if (head_ >= kCompactAfter && head_ * 2 >= end_) {
      // Only here, never in complete(): the executor holds pointers into the table while
      // it completes a group, and add() runs when nobody does. The completed slots move to
      // the back, where their memory is used again.
      const auto by = static_cast<std::ptrdiff_t>(head_);
      std::rotate(requests_.begin(), requests_.begin() + by, requests_.end());
      std::rotate(live_flags_.begin(), live_flags_.begin() + by, live_flags_.end());
      base_ += head_;
      end_ -= head_;
      head_ = 0;
    }
    if (seq < base_ + head_) {  // not expected (numbers only grow); keeps the window correct
      if (seq < base_) {
        requests_.insert(requests_.begin(), base_ - seq, Request{});
        live_flags_.insert(live_flags_.begin(), base_ - seq, 0);
        end_ += base_ - seq;
        base_ = seq;
      }
      head_ = seq - base_;
    }
    const auto offset = seq - base_;
    if (offset >= end_) {
      end_ = offset + 1;
      if (requests_.size() < end_) {
        requests_.resize(end_);
        live_flags_.resize(end_, 0);
      }
    }
    if (!live_flags_[offset]) ++live_;
    live_flags_[offset] = 1;
    swap(requests_[offset], request);
  }
  void add(Request&& request) { add(request); }
  /// Takes a whole batch, the first `count` of `batch`, into an empty table by exchanging
  /// vectors, when they are numbered consecutively (a cycle's take from the queue, without a
  /// join() marker): a step's requests are not touched one by one (requests after `count`
  /// become spare slots). `batch` comes back holding the table's completed requests, with
  /// their memory. Returns false, and takes nothing, when the table is not empty or the
  /// numbers have gaps; then add() each.
  bool adopt(std::vector<Request>& batch, std::size_t count) {
    if (live_ != 0 || count == 0 || count > batch.size() ||
        batch[count - 1].seq - batch.front().seq + 1 != count) {
      return false;
    }
    requests_.swap(batch);
    live_flags_.assign(requests_.size(), 0);
    std::fill_n(live_flags_.begin(), count, 1);
    base_ = requests_.front().seq;
    head_ = 0;
    end_ = count;
    live_ = count;
    return true;
  }
  /// The request numbered `seq`, or null: a joined rank has none for the others' collectives.
  Request* find(std::uint64_t seq) {
    if (seq < base_ + head_ || seq - base_ >= end_ || !live_flags_[seq - base_]) return nullptr;
    return &requests_[seq - base_];
  }
  const Request* find(std::uint64_t seq) const {
    return const_cast<Outstanding*>(this)->find(seq);
  }
  const Request& at(std::uint64_t seq) const {
    const auto* request = find(seq);
    if (request == nullptr) throw std::out_of_range("engine: no outstanding collective");
    return *request;
  }
  bool contains(std::uint64_t seq) const { return find(seq) != nullptr; }
  /// The sequence number of the request called `name` (name mode: names are unique among a
  /// rank's pending requests), or nullopt.
  std::optional<std::uint64_t> seq_named(const std::string& name) const {
    for (auto i = head_; i < end_; ++i) {
      if (live_flags_[i] && requests_[i].fp.name == name) return requests_[i].seq;
    }
    return std::nullopt;
  }
  /// Name mode: every pending request's sequence number by name, for resolving a whole
  /// cycle's released names at once (seq_named() for each would scan the table each time).
  /// The views point into the table: valid until it changes.
  std::unordered_map<std::string_view, std::uint64_t> seqs_by_name() const {
    std::unordered_map<std::string_view, std::uint64_t> seqs;
    seqs.reserve(live_);
    for (auto i = head_; i < end_; ++i) {
      if (live_flags_[i]) seqs.emplace(requests_[i].fp.name, requests_[i].seq);
    }
    return seqs;
  }
  bool empty() const { return live_ == 0; }

  /// Completes the Work of `seq` (nullptr: success) and forgets it; nothing if it is not here.
  /// Pointers to other requests stay valid.
  void complete(std::uint64_t seq, const Error* error) {
    auto work = retire(seq);
    if (work) work->complete(error);
  }
  /// complete() for each of `seqs` (a fused group), marking every Work done before waking
  /// anyone: a caller waiting on the group's Works one after the other wakes once, to find
  /// them all done, instead of once per Work (and on a shared core, handing the CPU back and
  /// forth with the engine thread in between). A Work nobody sleeps on nor waits to be called
  /// back from is let go as soon as it is done, so that the caller's thread, dropping its
  /// handle later, is most likely the one that frees (recycles) its state.
  void complete(std::span<const std::uint64_t> seqs, const Error* error) {
    finishing_.clear();
    for (const auto seq : seqs) {
      auto work = retire(seq);
      if (work && work->finish(error)) finishing_.push_back(std::move(work));
    }
    for (auto& work : finishing_) {
      work->wake();
      work.reset();
    }
    finishing_.clear();
  }
  /// Completes every Work with `error`.
  void fail_all(const Error& error) {
    for (auto i = head_; i < end_; ++i) {
      if (!live_flags_[i]) continue;
      live_flags_[i] = 0;
      auto work = std::move(requests_[i].work);
      requests_[i].allocate = nullptr;
      work->complete(&error);
    }
    end_ = 0;
    head_ = 0;
    live_ = 0;
  }

 private:
  // Completed slots at the front are moved to the back once there are this many (and they
  // are at least half of the table), so that a table that never empties does not grow
  // without end.
  static constexpr std::size_t kCompactAfter = 64;

  /// Forgets `seq` and returns its Work (null when `seq` is not here).
  std::shared_ptr<WorkState> retire(std::uint64_t seq) {
    auto* request = find(seq);
    if (request == nullptr) return nullptr;
    live_flags_[seq - base_] = 0;
    request->allocate = nullptr;  // may hold the caller's state
    --live_;
    while (head_ < end_ && !live_flags_[head_]) ++head_;
    return std::move(request->work);
  }

  // Slot i, for i < end_, is sequence number base_ + i; live_flags_[i] says whether it is
  // outstanding. A completed slot keeps its request, with the request's name and shape
  // memory, until add() swaps a new one in (or adopt() hands the lot back); slots from end_
  // on are such memory too.
  std::vector<Request> requests_;
  std::vector<std::uint8_t> live_flags_;
  std::uint64_t base_ = 0;   // the sequence number of requests_.front()
  std::size_t head_ = 0;     // slots before this one are completed
  std::size_t end_ = 0;
  std::size_t live_ = 0;
  std::vector<std::shared_ptr<WorkState>> finishing_;  // complete(seqs)'s scratch
};

}  // namespace ringfuse::engine
