#include "engine/coordinator.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "engine/rank_set.hpp"

namespace ringfuse::engine {

void Coordinator::record(int rank, std::uint64_t seq, Fingerprint fp, std::int64_t cache_index,
                         Clock::time_point since) {
  auto& pending = mode_ == MatchMode::name ? named_[fp.name] : table_[seq];
  if (pending.by_rank.empty()) {
    pending.by_rank.resize(static_cast<std::size_t>(size_));
    pending.index_by_rank.assign(static_cast<std::size_t>(size_), kNotCached);
    pending.since = since;
    pending.arrival = ++arrivals_;
  }
  pending.by_rank[static_cast<std::size_t>(rank)] = std::move(fp);
  pending.index_by_rank[static_cast<std::size_t>(rank)] = cache_index;
}

void Coordinator::receive(int rank, CycleMessage message, Clock::time_point now) {
  if (message.indexed) {
    auto& run = runs_[static_cast<std::size_t>(rank)];
    run.first_seq = message.first_seq;
    run.indices = std::move(message.indices);
  } else {
    any_full_ = true;
  }
  for (auto& entry : message.entries) {
    record(rank, entry.seq, std::move(entry.fp),
           entry.cache_index ? std::int64_t{*entry.cache_index} : kNotCached, now);
  }
  if (message.join && !joined_[static_cast<std::size_t>(rank)]) {
    joined_[static_cast<std::size_t>(rank)] = true;
    last_joined_ = rank;
  }
  busy_[static_cast<std::size_t>(rank)] = message.busy;
  if (message.shutdown && !shutdown_rank_) shutdown_rank_ = rank;
}

std::string Coordinator::label(std::uint64_t seq, const std::string& name) const {
  return mode_ == MatchMode::name ? fmt::format("'{}'", name) : fmt::format("#{}", seq);
}

bool Coordinator::present(const Pending& pending, int rank) const {
  return pending.by_rank[static_cast<std::size_t>(rank)].has_value() ||
         joined_[static_cast<std::size_t>(rank)];
}

ReadyEntry Coordinator::release(std::uint64_t seq, Pending& pending) const {
  ReadyEntry entry;
  entry.seq = seq;
  // The steady state: every rank announced it, by the same cache index (nobody has joined,
  // and equal indices mean equal fingerprints, as every rank's cache is the same).
  const std::int64_t common_index = pending.index_by_rank.front();
  bool one_index = common_index != kNotCached;
  for (int rank = 0; rank < size_ && one_index; ++rank) {
    one_index = pending.by_rank[static_cast<std::size_t>(rank)].has_value() &&
                pending.index_by_rank[static_cast<std::size_t>(rank)] == common_index;
  }
  if (one_index) {
    entry.kind = ReadyEntry::Kind::cached;
    entry.cache_index = static_cast<std::uint32_t>(common_index);
    entry.fp = std::move(*pending.by_rank.front());  // the pending entry goes after release
    return entry;
  }
  // Group the ranks by what they announced, in order of first appearance.
  std::vector<std::pair<Fingerprint, std::vector<int>>> groups;
  std::vector<int> joined_ranks;
  for (int rank = 0; rank < size_; ++rank) {
    const auto& fp = pending.by_rank[static_cast<std::size_t>(rank)];
    if (!fp) {
      joined_ranks.push_back(rank);
      continue;
    }
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& group) { return group.first.matches(*fp); });
    if (it == groups.end()) {
      groups.push_back({*fp, {rank}});
    } else {
      it->second.push_back(rank);
    }
  }
  entry.fp = groups.front().first;
  if (groups.size() > 1) {
    const bool names_differ = std::any_of(groups.begin(), groups.end(), [&](const auto& group) {
      return group.first.name != entry.fp.name;
    });
    std::vector<std::string> parts;
    for (const auto& [fp, ranks] : groups) {
      parts.push_back(fmt::format("{}: {}", names_.describe(ranks), fp.describe(names_differ)));
    }
    entry.kind = ReadyEntry::Kind::error;
    // Name mode matches by name: the names always agree, and the label is the name.
    const bool numbered = mode_ == MatchMode::sequence;
    entry.error = fmt::format(
        "{}: collective {}{} does not match across ranks: {}", names_.engine(),
        label(seq, entry.fp.name),
        names_differ || !numbered ? std::string() : fmt::format(" '{}'", entry.fp.name),
        fmt::join(parts, "; "));
    return entry;
  }
  if (!joined_ranks.empty()) {
    const bool unsupported = entry.fp.op_type == OpType::alltoall ||
                             entry.fp.op_type == OpType::reducescatter ||
                             entry.fp.op_type == OpType::alltoallv ||
                             entry.fp.op_type == OpType::reducescatterv ||
                             (entry.fp.op_type == OpType::broadcast &&
                              std::find(joined_ranks.begin(), joined_ranks.end(),
                                        entry.fp.root) != joined_ranks.end());
    if (unsupported) {
      entry.kind = ReadyEntry::Kind::error;
      entry.error = fmt::format("{}: collective {}{} cannot run while {} {} "
                                "joined",
                                names_.engine(),
                                mode_ == MatchMode::name ? std::string() : label(seq, {}) + " ",
                                entry.fp.describe(true), names_.describe(joined_ranks),
                                joined_ranks.size() == 1 ? "has" : "have");
      return entry;
    }
  }
  if (entry.fp.op_type == OpType::allgather) {
    entry.kind = ReadyEntry::Kind::full;
    for (const auto& fp : pending.by_rank) entry.dim0.push_back(fp ? fp->shape.front() : 0);
    return entry;
  }
  if (entry.fp.op_type == OpType::alltoallv) {  // nobody has joined (above)
    entry.kind = ReadyEntry::Kind::full;
    for (const auto& fp : pending.by_rank) {
      entry.dim0.insert(entry.dim0.end(), fp->splits.begin(), fp->splits.end());
    }
    return entry;
  }
  if (const auto index = cache_.find(entry.fp)) {
    entry.kind = ReadyEntry::Kind::cached;
    entry.cache_index = *index;
  } else {
    entry.kind = ReadyEntry::Kind::full;
  }
  return entry;
}

std::optional<std::uint32_t> Coordinator::agreed_prefix() const {
  std::size_t shortest = runs_.front().indices.size();
  for (const auto& run : runs_) {
    if (!run.indices.empty() && run.first_seq != next_release_) return std::nullopt;
    shortest = std::min(shortest, run.indices.size());
  }
  const auto& reference = runs_.front().indices;
  for (std::size_t i = 0; i < shortest; ++i) {
    for (const auto& run : runs_) {
      // Two collectives at one sequence number: the full way names the mismatch.
      if (run.indices[i] != reference[i]) return std::nullopt;
    }
  }
  return static_cast<std::uint32_t>(shortest);
}

Clock::time_point Coordinator::first_seen(std::uint64_t seq, Clock::time_point otherwise) const {
  if (seq >= indexed_seen_until_) return otherwise;
  auto since = otherwise;
  for (const auto& [first, time] : indexed_seen_) {
    if (first > seq) break;
    since = time;
  }
  return since;
}

void Coordinator::note_held_by_index(std::uint32_t released, Clock::time_point now) {
  constexpr std::size_t kListed = 8;
  std::size_t longest = 0;
  for (const auto& run : runs_) longest = std::max(longest, run.indices.size());
  const std::uint64_t held_until = next_release_ + longest;
  if (held_until > indexed_seen_until_) {
    indexed_seen_.emplace_back(std::max(indexed_seen_until_, next_release_ + released), now);
    indexed_seen_until_ = held_until;
  }
  while (indexed_seen_.size() > 1 && indexed_seen_[1].first <= next_release_ + released) {
    indexed_seen_.pop_front();
  }
  indexed_waiting_.clear();
  for (std::size_t offset = released; offset < longest && offset < released + kListed; ++offset) {
    const std::uint64_t seq = next_release_ + offset;
    WaitingCollective item{seq, {}, {}, {}, first_seen(seq, now)};
    for (int rank = 0; rank < size_; ++rank) {
      const auto& indices = runs_[static_cast<std::size_t>(rank)].indices;
      if (offset < indices.size()) {
        if (item.description.empty()) item.description = cache_.at(indices[offset]).describe(true);
        item.submitted.push_back(rank);
      } else {
        item.missing.push_back(rank);
      }
    }
    indexed_waiting_.push_back(std::move(item));
  }
}

void Coordinator::absorb_indexed(Clock::time_point now) {
  for (int rank = 0; rank < size_; ++rank) {
    const auto& run = runs_[static_cast<std::size_t>(rank)];
    for (std::size_t i = 0; i < run.indices.size(); ++i) {
      const std::uint64_t seq = run.first_seq + i;
      record(rank, seq, cache_.at(run.indices[i]), run.indices[i], first_seen(seq, now));
    }
  }
  indexed_seen_.clear();
  indexed_seen_until_ = 0;
  indexed_waiting_.clear();
}

std::optional<std::uint32_t> Coordinator::settle_indexed(Clock::time_point now) {
  const bool short_way = !any_full_ && table_.empty() && !shutdown_rank_ &&
                         std::none_of(joined_.begin(), joined_.end(), [](bool j) { return j; });
  std::optional<std::uint32_t> released;
  if (short_way) released = agreed_prefix();
  if (released) {
    note_held_by_index(*released, now);
    next_release_ += *released;
  } else {
    absorb_indexed(now);
  }
  for (auto& run : runs_) run.indices.clear();
  any_full_ = false;
  return released;
}

CycleResponse Coordinator::respond(Clock::time_point now) {
  CycleResponse response;
  response.indexed_released = settle_indexed(now);
  for (int rank = 0; rank < size_; ++rank) {
    if (joined_[static_cast<std::size_t>(rank)]) response.joined.push_back(rank);
  }
  while (mode_ == MatchMode::sequence) {
    const auto it = table_.find(next_release_);
    if (it == table_.end()) break;
    bool ready = true;
    for (int rank = 0; rank < size_ && ready; ++rank) ready = present(it->second, rank);
    if (!ready) break;
    response.ready.push_back(release(next_release_, it->second));
    table_.erase(it);
    ++next_release_;
  }
  if (mode_ == MatchMode::name) release_by_name(response);
  if (std::all_of(joined_.begin(), joined_.end(), [](bool j) { return j; })) {
    response.join_done = true;
    response.last_joined = last_joined_;
    std::fill(joined_.begin(), joined_.end(), false);
  }
  response.world_busy = !table_.empty() || !named_.empty() ||
                        std::any_of(busy_.begin(), busy_.end(), [](bool b) { return b; }) ||
                        std::any_of(joined_.begin(), joined_.end(), [](bool j) { return j; });
  if (shutdown_rank_) {
    response.status = CycleResponse::Status::shutdown;
    std::vector<std::string> left;
    const auto describe_left = [&](const std::string& prefix, const Pending& pending) {
      const auto& any = *std::find_if(pending.by_rank.begin(), pending.by_rank.end(),
                                      [](const auto& fp) { return fp.has_value(); });
      left.push_back(prefix + any->describe(true));
    };
    for (const auto& [seq, pending] : table_) describe_left(fmt::format("#{} ", seq), pending);
    for (const auto& [name, pending] : named_) describe_left("", pending);
    response.message =
        fmt::format("{}: rank {} shut its engine down{}", names_.engine(), names_(*shutdown_rank_),
                    left.empty() ? std::string()
                                 : fmt::format(" while collectives were pending: {}",
                                               fmt::join(left, ", ")));
  }
  return response;
}

void Coordinator::release_by_name(CycleResponse& response) {
  std::vector<std::pair<std::uint64_t, std::string>> ready;  // (arrival, name)
  for (const auto& [name, pending] : named_) {
    bool all = true;
    for (int rank = 0; rank < size_ && all; ++rank) all = present(pending, rank);
    if (all) ready.emplace_back(pending.arrival, name);
  }
  std::sort(ready.begin(), ready.end());
  for (const auto& [arrival, name] : ready) {
    const auto it = named_.find(name);
    response.ready.push_back(release(next_release_++, it->second));
    named_.erase(it);
  }
}

std::vector<WaitingCollective> Coordinator::waiting(bool described) const {
  std::vector<WaitingCollective> result = indexed_waiting_;
  const auto add = [&](std::uint64_t key, const Pending& pending) -> WaitingCollective& {
    result.push_back(WaitingCollective{key, {}, {}, {}, pending.since});
    return result.back();
  };
  // Which ranks announced a pending collective, and which (not joined) still have to.
  const auto sort_ranks = [&](WaitingCollective& item, const auto& by_rank) {
    for (int rank = 0; rank < size_; ++rank) {
      const auto& fp = by_rank[static_cast<std::size_t>(rank)];
      if (fp) {
        if (described && item.description.empty()) item.description = fp->describe(true);
        item.submitted.push_back(rank);
      } else if (!joined_[static_cast<std::size_t>(rank)]) {
        item.missing.push_back(rank);
      }
    }
  };
  // Name mode: keyed by arrival, and named by name alone (no sequence number to show).
  for (const auto& [name, pending] : named_) {
    auto& item = add(pending.arrival, pending);
    item.numbered = false;
    sort_ranks(item, pending.by_rank);
  }
  for (const auto& [seq, pending] : table_) sort_ranks(add(seq, pending), pending.by_rank);
  return result;
}

}  // namespace ringfuse::engine
