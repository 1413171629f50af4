#include "reduce/half.hpp"

#include "reduce/half_impl.hpp"

namespace ringfuse::reduce {

float f16_to_float(std::uint16_t bits) { return detail::f16_bits_to_float(bits); }

std::uint16_t float_to_f16(float value) { return detail::float_to_f16_bits(value); }

float bf16_to_float(std::uint16_t bits) { return detail::bf16_bits_to_float(bits); }

std::uint16_t float_to_bf16(float value) { return detail::float_to_bf16_bits(value); }

}  // namespace ringfuse::reduce
