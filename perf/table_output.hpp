// The nccl-tests-style table printed by rank 0.
#pragma once

#include <ostream>
#include <vector>

#include "report.hpp"
#include "results.hpp"

namespace ringfuse::perf {

/// Columns: impl size count type redop algo time_us algbw_GBps busbw_GBps wrong [ratio].
/// The ratio column appears when peers were requested.
void print_table(std::ostream& out, const RunInfo& info, const std::vector<Row>& rows);

}  // namespace ringfuse::perf
