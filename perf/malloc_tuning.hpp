// glibc malloc settings that decide Open MPI's large all-reduce on this machine: with the
// defaults, temporaries above the (dynamic, ≤ 32 MiB) mmap threshold are fresh mmap()s each
// call, so every call pays page faults; MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296
// keeps them in the heap (DESIGN.md §3 measured ~0.4 GB/s vs ~5.4 GB/s at 64-256 MiB).
#pragma once

#include <string>

namespace ringfuse::perf {

/// Whether this process was started with both tuned variables set.
bool malloc_env_tuned();

/// One line for the table header and the JSON: which malloc environment was in effect.
std::string describe_malloc_env();

/// Re-executes this program (same argv, same MPI/ringfuse-run environment) with the tuned
/// variables set, so every implementation runs under them. Must run before MPI_Init and
/// before anything connects. Returns only on failure (with the reason).
std::string reexec_with_tuned_env(char** argv);

/// The same settings through mallopt(), for a second pass inside this process. glibc's mallopt
/// takes an int, so the trim threshold is INT_MAX (2 GiB) rather than 4 GiB; both exceed every
/// buffer measured here. Returns false if glibc refused.
bool apply_tuned_mallopt();

}  // namespace ringfuse::perf
