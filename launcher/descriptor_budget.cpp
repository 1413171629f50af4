#include "descriptor_budget.hpp"

#include <sys/resource.h>

#include <fmt/format.h>

namespace ringfuse::launcher {
namespace {

constexpr long long kPerSupervisedRank = 3;  // stdout and stderr pipes, progress record
constexpr long long kPerStoreClient = 1;
constexpr long long kReserve = 64;

}  // namespace

long long DescriptorNeed::total() const {
  return kPerSupervisedRank * supervised_ranks + kPerStoreClient * store_clients + kReserve;
}

std::optional<std::string> descriptor_shortfall(const DescriptorNeed& need) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return std::nullopt;
  }
  const long long needed = need.total();
  if (needed <= static_cast<long long>(limit.rlim_cur)) return std::nullopt;
  const std::string hard = limit.rlim_max == RLIM_INFINITY
                               ? std::string("unlimited")
                               : fmt::format("{}", static_cast<long long>(limit.rlim_max));
  const std::string advice =
      limit.rlim_max != RLIM_INFINITY && needed > static_cast<long long>(limit.rlim_max)
          ? fmt::format("beyond the hard limit ({}) too: start fewer ranks here, or have the "
                        "administrator raise it",
                        hard)
          : fmt::format("raise it with `ulimit -n {}` (hard limit {}) before ringfuse-run, or "
                        "start fewer ranks",
                        needed, hard);
  return fmt::format("ringfuse-run would need about {} open files ({} ranks supervised here, {} "
                     "store connections), but its limit (ulimit -n) is {}; {}",
                     needed, need.supervised_ranks, need.store_clients,
                     static_cast<long long>(limit.rlim_cur), advice);
}

}  // namespace ringfuse::launcher
