#include "core/undefined_reduction.hpp"

#include <fmt/format.h>

namespace ringfuse::core {

std::string undefined_reduction(DataType type, ReduceOp op) {
  if (is_bitwise(op)) {
    return fmt::format("{} of {} is not defined (band, bor and bxor take integer or bool "
                       "elements); reduce an integer type, or the bits viewed as one (in torch "
                       "tensor.view(torch.int32) for f32)",
                       to_string(op), to_string(type));
  }
  return fmt::format("{} of {} is not defined (on bools sum, max and bor are logical or, min, "
                     "prod and band logical and); use max for any, min for all, or an integer "
                     "type to count the true values",
                     to_string(op), to_string(type));
}

}  // namespace ringfuse::core
