#include "results.hpp"

#include <map>

namespace ringfuse::perf {

void compute_ratios(std::vector<Row>& rows) {
  std::map<std::uint64_t, const Row*> best_peer;
  for (const Row& r : rows) {
    // A peer row that failed its check is no yardstick (Gloo's halving-doubling
    // reduce-scatter returns wrong values at 64 MiB on this machine, perf/RESULTS.md).
    if (r.ours || r.wrong.value_or(0) > 0) continue;
    auto [it, inserted] = best_peer.try_emplace(r.size, &r);
    const bool better = r.size == 0 ? r.time_us < it->second->time_us
                                    : r.busbw_gbps > it->second->busbw_gbps;
    if (!inserted && better) it->second = &r;
  }
  for (Row& r : rows) {
    if (!r.ours) continue;
    const auto it = best_peer.find(r.size);
    if (it == best_peer.end()) continue;
    const Row& peer = *it->second;
    if (r.size == 0) {
      if (r.time_us > 0) r.ratio = peer.time_us / r.time_us;
    } else if (peer.busbw_gbps > 0) {
      r.ratio = r.busbw_gbps / peer.busbw_gbps;
    }
  }
}

}  // namespace ringfuse::perf
