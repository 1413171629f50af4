// Why an operator has no meaning on an element type, in the words every refusal of it uses
// (the reduction kernels, the Context and the engine).
#pragma once

#include <string>

#include "ringfuse/types.hpp"

namespace ringfuse::core {

/// "avg of bool is not defined (...); use ..." for a combination that is_defined() refuses.
std::string undefined_reduction(DataType type, ReduceOp op);

}  // namespace ringfuse::core
