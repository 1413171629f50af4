#include "engine/negotiator.hpp"

#include <iterator>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "engine/rank_set.hpp"

namespace ringfuse::engine {
namespace {

// A shutting-down engine waits this long for a silent coordinator or peer.
constexpr std::chrono::seconds kShutdownGrace{2};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

bool past_grace(Clock::time_point stop_requested) {
  return stop_requested != Clock::time_point{} && Clock::now() - stop_requested > kShutdownGrace;
}

}  // namespace

Negotiator::Negotiator(int rank, int size, const EngineConfig& config,
                       std::unique_ptr<transport::Transport> control, RankNames names)
    : rank_(rank),
      size_(size),
      names_(std::move(names)),
      match_(config.match),
      stall_abort_(config.stall_abort),
      control_(std::move(control)),
      cache_(config.cache_capacity),
      coordinator_(size, cache_, config.match, names_),
      stall_(config.stall_warning, config.stall_abort, names_) {}

Cycle Negotiator::cycle(Outstanding& outstanding, bool join, bool join_pending,
                        bool shutdown, Clock::time_point stop_requested) {
  Cycle result;
  auto message = announce(outstanding, join, join_pending, shutdown);
  result.announced = message.entries.size() + message.indices.size();
  const bool by_index = message.indexed;
  result.response = exchange(std::move(message), stop_requested);
  if (match_ == MatchMode::name) {
    resolve_names(outstanding, result.response);
  } else if (result.response.indexed_released) {
    release_held(outstanding, result.response);
  } else if (by_index) {
    clear_held();  // the coordinator took them into its table
  }
  if (result.response.status != CycleResponse::Status::abort) update_cache(result);
  return result;
}

CycleMessage Negotiator::announce(const Outstanding& outstanding, bool join, bool join_pending,
                                  bool shutdown) {
  CycleMessage message;
  message.join = join;
  message.shutdown = shutdown;
  message.busy = !outstanding.empty();

  // The short way when everything held is cached (never an allgather or uneven alltoall: the
  // coordinator must collect every rank's dimension 0 or splits). Not in name mode: the short
  // way relies on every rank holding the same collectives in the same order.
  bool by_index = !join && !shutdown && !join_pending && match_ == MatchMode::sequence;
  const auto pending = held();
  if (by_index) message.indices.reserve(pending.size());
  for (auto it = pending.begin(); by_index && it != pending.end(); ++it) {
    prefetch_ahead(outstanding, pending, static_cast<std::size_t>(it - pending.begin()));
    if (!it->index || it->looked_up_at != cache_.evictions()) {
      it->index = look_up(outstanding.at(it->seq).fp);
      it->looked_up_at = cache_.evictions();
    }
    if (it->index) {
      message.indices.push_back(*it->index);
    } else {
      by_index = false;
    }
  }
  if (by_index) {
    message.indexed = true;
    message.first_seq = pending.empty() ? 0 : pending.front().seq;
    return message;
  }
  message.indices.clear();
  message.entries.reserve(pending.size());
  for (const auto& held : pending) {
    const auto& fp = outstanding.at(held.seq).fp;
    const bool known = held.index && held.looked_up_at == cache_.evictions();
    message.entries.push_back(Announcement{held.seq, known ? held.index : cache_.find(fp), fp});
  }
  clear_held();
  return message;
}

void Negotiator::prefetch_ahead(const Outstanding& outstanding, std::span<const Held> pending,
                                std::size_t i) const {
  // Far enough ahead for the loads to arrive before the comparison, near enough that the
  // cache keeps them: a comparison costs about 20 ns when its memory is cached.
  constexpr std::size_t kAhead = 8;
  if (i + kAhead >= pending.size()) return;
  if (const Request* ahead = outstanding.find(pending[i + kAhead].seq)) {
    prefetch_fingerprint(ahead->fp);
  }
  // look_up() tries the slot after the last one found: the same guess, kAhead further on.
  if (last_found_) cache_.prefetch(*last_found_ + 1 + static_cast<std::uint32_t>(kAhead));
}

std::optional<std::uint32_t> Negotiator::look_up(const Fingerprint& fp) {
  if (last_found_ && cache_.holds(*last_found_ + 1, fp)) {
    last_found_ = *last_found_ + 1;
  } else {
    last_found_ = cache_.find(fp);
  }
  return last_found_;
}

void Negotiator::resolve_names(const Outstanding& outstanding, CycleResponse& response) const {
  if (response.ready.size() <= 1) {
    for (auto& entry : response.ready) {
      entry.seq = outstanding.seq_named(entry.fp.name).value_or(0);
    }
    return;
  }
  // One pass over the table, not one per released name (quadratic in a step's tensors).
  const auto seqs = outstanding.seqs_by_name();
  for (auto& entry : response.ready) {
    const auto it = seqs.find(entry.fp.name);
    entry.seq = it == seqs.end() ? 0 : it->second;
  }
}

void Negotiator::release_held(Outstanding& outstanding, CycleResponse& response) {
  const auto released = *response.indexed_released;
  const auto pending = held();
  if (released > pending.size()) {
    throw core::error_at(ErrorKind::protocol, names_(rank_), names_(0),
                         "{}: the coordinator released {} collectives by cache "
                         "index, but this rank holds {}",
                         names_.engine(), released, pending.size());
  }
  // The entries of an earlier cycle: each swaps its fingerprint with its request's, so the
  // names' and shapes' memory changes hands instead of being copied, and no allocation or
  // free happens per tensor (a training loop releases the same tensors every step).
  std::vector<ReadyEntry> entries;
  entries.swap(spare_ready_);
  entries.resize(released);
  for (std::size_t i = 0; i < released; ++i) {
    auto& entry = entries[i];
    const auto& held = pending[i];
    Request* request = outstanding.find(held.seq);
    if (request == nullptr) {
      throw core::error_at(ErrorKind::protocol, names_(rank_), names_(0),
                           "{}: the coordinator released collective #{} by cache index, but "
                           "this rank holds no such request",
                           names_.engine(), held.seq);
    }
    entry.seq = held.seq;
    entry.kind = ReadyEntry::Kind::cached;
    entry.cache_index = *held.index;  // sent in this cycle's message, so looked up
    using std::swap;
    swap(entry.fp, request->fp);
    entry.dim0.clear();
    entry.error.clear();
  }
  held_head_ += released;
  if (held_head_ == held_.size()) {
    clear_held();  // the usual case: everything held was released
  } else if (held_head_ * 2 >= held_.size()) {
    held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(held_head_));
    held_head_ = 0;
  }
  if (response.ready.empty()) {  // always, as the coordinator lists nothing else then
    response.ready = std::move(entries);
  } else {
    std::move(entries.begin(), entries.end(), std::back_inserter(response.ready));
  }
}

CycleResponse Negotiator::exchange(CycleMessage message, Clock::time_point stop_requested) {
  if (rank_ == 0) return coordinate(std::move(message), stop_requested);
  control_.send(0, message.encode());
  const auto waiting_since = Clock::now();
  const auto give_up = stall_abort_ + std::chrono::seconds(10);
  while (true) {
    if (auto bytes = control_.try_recv(0)) return CycleResponse::decode(*bytes, cache_);
    if (Clock::now() - waiting_since > give_up) {
      throw core::error_at(ErrorKind::timeout, names_(rank_), names_(0),
                           "{}: the coordinator (rank {}) has not answered a "
                           "negotiation cycle for {:.1f} s; is rank {} stalled?",
                           names_.engine(), names_(0), seconds_since(waiting_since), names_(0));
    }
    if (past_grace(stop_requested)) {
      throw core::error_at(ErrorKind::peer_failure, names_(rank_), names_(0),
                           "{}: shut down while the coordinator (rank {}) had not answered "
                           "the last negotiation cycle",
                           names_.engine(), names_(0));
    }
  }
}

CycleResponse Negotiator::coordinate(CycleMessage message, Clock::time_point stop_requested) {
  const auto cycle_started = Clock::now();
  coordinator_.receive(0, std::move(message), cycle_started);
  std::vector<bool> received(static_cast<std::size_t>(size_), false);
  received[0] = true;
  int missing = size_ - 1;
  std::optional<std::string> abort;
  while (missing > 0 && !abort) {
    for (int peer = 1; peer < size_; ++peer) {
      if (received[static_cast<std::size_t>(peer)]) continue;
      if (auto bytes = control_.try_recv(peer)) {
        coordinator_.receive(peer, CycleMessage::decode(*bytes, cache_), Clock::now());
        received[static_cast<std::size_t>(peer)] = true;
        --missing;
      }
    }
    if (missing == 0) break;
    std::vector<int> silent;
    for (int peer = 1; peer < size_; ++peer) {
      if (!received[static_cast<std::size_t>(peer)]) silent.push_back(peer);
    }
    abort = inspect_stalls(silent, cycle_started);
    if (!abort && past_grace(stop_requested)) {
      throw core::rank_error(ErrorKind::peer_failure, names_(0),
                             "{}: shut down while {} had not taken part in the last "
                             "negotiation cycle",
                             names_.engine(), names_.describe(silent));
    }
  }
  CycleResponse response;
  if (!abort) {
    response = coordinator_.respond(Clock::now());
    abort = inspect_stalls({}, Clock::now());
    if (!abort) stall_.resolved(coordinator_.waiting(false));
  }
  if (abort) {
    response = CycleResponse{};
    response.status = CycleResponse::Status::abort;
    response.message = *abort;
  }
  const auto bytes = response.encode();
  for (int peer = 1; peer < size_; ++peer) control_.send(peer, bytes);
  return response;
}

std::optional<std::string> Negotiator::inspect_stalls(const std::vector<int>& silent,
                                                      Clock::time_point cycle_started) {
  // Every pending collective's description is formatted only when a warning or an abort
  // shows it: this runs every cycle and every tick of waiting, over everything pending.
  const auto now = Clock::now();
  if (!stall_.due(now, coordinator_.waiting(false), silent, cycle_started)) return std::nullopt;
  return stall_.inspect(now, coordinator_.waiting(), silent, cycle_started);
}

void Negotiator::update_cache(Cycle& cycle) {
  const auto evictions_before = cache_.evictions();
  for (const auto& entry : cycle.response.ready) {
    if (entry.kind == ReadyEntry::Kind::cached) {
      cache_.touch(entry.cache_index);
      ++cycle.cache_hits;
    } else if (entry.kind == ReadyEntry::Kind::full) {
      cache_.insert(entry.fp);
      ++cycle.cache_misses;
    }
  }
  cycle.cache_evictions = cache_.evictions() - evictions_before;
}

}  // namespace ringfuse::engine
