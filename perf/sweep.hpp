// The measurement loop: for every size, allocate the buffers once, then let each
// implementation warm up and run its timed iterations on them, and check the last result.
#pragma once

#include <span>
#include <vector>

#include "flags.hpp"
#include "implementation.hpp"
#include "results.hpp"
#include "ringfuse/context.hpp"

namespace ringfuse::perf {

/// The nominal sizes of -b/-e/-f (one size, 0, for barrier).
std::vector<std::uint64_t> sweep_sizes(const PerfOptions& options);

/// Measures `impls` at every size; `control` carries the untimed statistics exchange.
/// Returns the rows on every rank (rank 0 prints them).
std::vector<Row> run_sweep(Context& control, const PerfOptions& options,
                           std::span<Implementation* const> impls);

}  // namespace ringfuse::perf
