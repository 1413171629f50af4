// The rendezvous step every set-up repeats: each rank publishes one value and reads everyone's.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "rendezvous/store.hpp"

namespace ringfuse::rendezvous {

/// Collective over `size` ranks: publishes `value` as `key/<rank>` and returns every rank's
/// value, indexed by rank (this rank's included). Waits at most `timeout` for the others; the
/// timeout error names the ranks' keys that never appeared.
std::vector<std::string> all_gather(Store& store, const std::string& key, std::string_view value,
                                    int rank, int size, std::chrono::milliseconds timeout);

/// Looks, every `every` of a long wait, at whether to go on waiting: `check` throws to give up
/// before the timeout (a peer that is known never to arrive).
struct WhileWaiting {
  std::chrono::milliseconds every{500};
  std::function<void()> check;
};

/// Publishes `value` as `key/<rank>` and returns the values of ranks 0 .. `count`-1 only
/// (this rank's own among them when rank < count), without waiting for the others: the
/// full-mesh connect needs only the lower ranks' listeners, so a rank starts accepting before
/// the higher ranks have published. all_gather() is gather_first(..., size, ...).
std::vector<std::string> gather_first(Store& store, const std::string& key,
                                      std::string_view value, int rank, int count,
                                      std::chrono::milliseconds timeout,
                                      const WhileWaiting& while_waiting = {});

/// Collective: `root` publishes `value` as `key`; every rank (root included) returns it.
/// Non-root ranks pass what they like as `value` (it is ignored).
std::string broadcast(Store& store, const std::string& key, std::string_view value, int rank,
                      int root, std::chrono::milliseconds timeout);

}  // namespace ringfuse::rendezvous
