// IEEE binary16 and bfloat16 conversions (round to nearest, ties to even; NaN kept NaN).
#pragma once

#include <cstdint>

namespace ringfuse::reduce {

float f16_to_float(std::uint16_t bits);
std::uint16_t float_to_f16(float value);
float bf16_to_float(std::uint16_t bits);
std::uint16_t float_to_bf16(float value);

}  // namespace ringfuse::reduce
