// `ringfuse-perf fusion`: one training step's gradient all-reduces of a real model (ResNet-50)
// or a synthetic one, timed fused through the engine against one all-reduce of the same total
// bytes, against one blocking all-reduce per tensor, and (under mpirun) against MPI_Allreduce
// per tensor. Also a scalar through the engine: the steady-state cost of one negotiation cycle.
// By default a model's modes are measured in interleaved rounds (--order), so that a shared
// machine's disturbances fall on every mode alike, and each row also gives the median of its
// per-round ratios to `single`.
#pragma once

#include "flags.hpp"

namespace ringfuse::perf {

/// Runs the whole subcommand (launch, measure, print, --json); returns the exit status.
int run_fusion(int argc, char** argv, const PerfOptions& options);

}  // namespace ringfuse::perf
