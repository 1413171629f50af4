// The collectives this rank has taken from its queue and not yet completed, by sequence
// number: the engine thread's one table, which negotiation reads (fingerprints to announce)
// and execution drains (buffers to run on, Works to complete). Engine thread only.
//
// Sequence numbers are handed out consecutively (a join() only skips some), so the table is
// a window of slots indexed by `seq - base`: a look-up is an index, not a tree walk, and a
// request is moved into a slot whose memory is reused, not into a node of its own. This is on
// every tensor's path several times a cycle (announce, release, execute, complete).
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/request.hpp"

namespace ringfuse::engine {

class Outstanding {
 public:
  void add(Request&& request) {
    const auto seq = request.seq;
    if (live_ == 0) {  // keeps the slots' memory: the steady state allocates nothing here
      slots_.clear();
      head_ = 0;
      base_ = seq;
    } else if (head_ >= kCompactAfter && head_ * 2 >= slots_.size()) {
      // Only here, never in complete(): the executor holds pointers into the table while
      // it completes a group, and add() runs when nobody does.
      slots_.erase(slots_.begin(), slots_.begin() + static_cast<std::ptrdiff_t>(head_));
      base_ += head_;
      head_ = 0;
    }
    if (seq < base_ + head_) {  // not expected (numbers only grow); keeps the window correct
      if (seq < base_) {
        slots_.insert(slots_.begin(), base_ - seq, std::nullopt);
        base_ = seq;
      }
      head_ = seq - base_;
    }
    const auto offset = seq - base_;
    if (offset == slots_.size()) {  // the usual case: the next number
      slots_.emplace_back(std::move(request));
      ++live_;
      return;
    }
    if (offset > slots_.size()) slots_.resize(offset + 1);
    if (!slots_[offset]) ++live_;
    slots_[offset] = std::move(request);
  }
  /// The request numbered `seq`, or null: a joined rank has none for the others' collectives.
  Request* find(std::uint64_t seq) {
    auto* slot = slot_of(seq);
    return slot != nullptr && *slot ? &**slot : nullptr;
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
    for (auto i = head_; i < slots_.size(); ++i) {
      if (slots_[i] && slots_[i]->fp.name == name) return slots_[i]->seq;
    }
    return std::nullopt;
  }
  /// Name mode: every pending request's sequence number by name, for resolving a whole
  /// cycle's released names at once (seq_named() for each would scan the table each time).
  /// The views point into the table: valid until it changes.
  std::unordered_map<std::string_view, std::uint64_t> seqs_by_name() const {
    std::unordered_map<std::string_view, std::uint64_t> seqs;
    seqs.reserve(live_);
    for (auto i = head_; i < slots_.size(); ++i) {
      if (slots_[i]) seqs.emplace(slots_[i]->fp.name, slots_[i]->seq);
    }
    return seqs;
  }
  bool empty() const { return live_ == 0; }

  /// Completes the Work of `seq` (nullptr: success) and forgets it; nothing if it is not here.
  /// Pointers to other requests stay valid.
  void complete(std::uint64_t seq, const Error* error) {
    auto* slot = slot_of(seq);
    if (slot == nullptr || !*slot) return;
    auto work = std::move((*slot)->work);
    slot->reset();
    --live_;
    while (head_ < slots_.size() && !slots_[head_]) ++head_;
    work->complete(error);
  }
  /// Completes every Work with `error`.
  void fail_all(const Error& error) {
    for (auto& slot : slots_) {
      if (slot) slot->work->complete(&error);
    }
    slots_.clear();
    head_ = 0;
    live_ = 0;
  }

 private:
  // Completed slots at the front are dropped once there are this many (and they are at least
  // half of the table), so that a table that never empties does not grow without end.
  static constexpr std::size_t kCompactAfter = 64;

  std::optional<Request>* slot_of(std::uint64_t seq) {
    if (seq < base_ + head_ || seq - base_ >= slots_.size()) return nullptr;
    return &slots_[seq - base_];
  }

  std::vector<std::optional<Request>> slots_;
  std::uint64_t base_ = 0;  // the sequence number of slots_.front()
  std::size_t head_ = 0;    // slots before this one are completed
  std::size_t live_ = 0;
};

}  // namespace ringfuse::engine
