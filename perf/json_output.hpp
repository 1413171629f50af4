// --json FILE: every row plus the run's context, for perf/plot and for comparing runs.
#pragma once

#include <string>
#include <vector>

#include "report.hpp"
#include "results.hpp"

namespace ringfuse::perf {

/// Throws ringfuse::Error naming the path when it cannot be written.
void write_json(const std::string& path, const RunInfo& info, const std::vector<Row>& rows);

}  // namespace ringfuse::perf
