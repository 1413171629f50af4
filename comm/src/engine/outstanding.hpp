// The collectives this rank has taken from its queue and not yet completed, by sequence
// number: the engine thread's one table, which negotiation reads (fingerprints to announce)
// and execution drains (buffers to run on, Works to complete). Engine thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "engine/request.hpp"

namespace ringfuse::engine {

class Outstanding {
 public:
  void add(Request request) {
    const auto seq = request.seq;
    requests_.emplace(seq, std::move(request));
  }
  /// The request numbered `seq`, or null: a joined rank has none for the others' collectives.
  Request* find(std::uint64_t seq) {
    const auto it = requests_.find(seq);
    return it == requests_.end() ? nullptr : &it->second;
  }
  const Request& at(std::uint64_t seq) const { return requests_.at(seq); }
  bool contains(std::uint64_t seq) const { return requests_.count(seq) != 0; }
  /// The sequence number of the request called `name` (name mode: names are unique among a
  /// rank's pending requests), or nullopt.
  std::optional<std::uint64_t> seq_named(const std::string& name) const {
    for (const auto& [seq, request] : requests_) {
      if (request.fp.name == name) return seq;
    }
    return std::nullopt;
  }
  bool empty() const { return requests_.empty(); }

  /// Completes the Work of `seq` (nullptr: success) and forgets it; nothing if it is not here.
  void complete(std::uint64_t seq, const Error* error) {
    const auto it = requests_.find(seq);
    if (it == requests_.end()) return;
    auto work = it->second.work;
    requests_.erase(it);
    work->complete(error);
  }
  /// Completes every Work with `error`.
  void fail_all(const Error& error) {
    for (auto& [seq, request] : requests_) request.work->complete(&error);
    requests_.clear();
  }

 private:
  std::map<std::uint64_t, Request> requests_;
};

}  // namespace ringfuse::engine
