// Inline scalar f16/bf16 conversions shared by half.cpp and the reduction kernels, so the
// kernels' per-element conversions inline into their loops instead of calling out of line.
#pragma once

#include <bit>
#include <cstdint>

namespace ringfuse::reduce::detail {

inline float f16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float (and a normal float, so FTZ/DAZ
    // cannot flush it).
    const float magnitude = static_cast<float>(mant) * 0x1p-24f;
    return std::bit_cast<float>(std::bit_cast<std::uint32_t>(magnitude) | sign);
  }
  if (exp == 31) {
    // Infinity, or NaN with its payload kept (a nonzero payload stays nonzero).
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

inline std::uint16_t float_to_f16_bits(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const auto sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t abs = bits & 0x7fffffffu;

  if (abs >= 0x7f800000u) {
    if (abs == 0x7f800000u) return sign | 0x7c00u;
    // NaN: keep the top payload bits and force the quiet bit, which also guarantees the
    // result is not mistaken for infinity when the surviving payload bits are all zero.
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));
  }
  if (abs >= 0x47800000u) {
    // >= 65536 rounds past the largest finite half (65504) under any rounding of ties.
    return sign | 0x7c00u;
  }
  if (abs >= 0x38800000u) {
    // Normal half range [2^-14, 65536): rebias the exponent and round the dropped 13 bits.
    // A carry out of the mantissa correctly bumps the exponent, up to infinity (0x7c00).
    std::uint32_t h = (abs - 0x38000000u) >> 13;
    const std::uint32_t rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0)) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  if (abs <= 0x33000000u) {
    // <= 2^-25: half of the smallest subnormal or less; the exact tie rounds to even (zero).
    return sign;
  }
  // Subnormal half: value = mant * 2^(e - 150), expressed in units of 2^-24.
  const std::uint32_t e = abs >> 23;
  const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - e;  // 14..24 for e in [103, 112]
  std::uint32_t h = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1u);
  // Rounding up from 0x3ff yields 0x400, the smallest normal: the encoding is continuous.
  if (rem > half || (rem == half && (h & 1u) != 0)) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

inline float bf16_bits_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

// Branch-free so that block conversions auto-vectorize.
inline std::uint16_t float_to_bf16_bits(float value) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; a carry into the
  // exponent rounds up to the next binade or to infinity, as it should.
  const std::uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  // NaN must not round into infinity (or wrap the sign): truncate and force the quiet bit.
  const std::uint32_t nan = (bits >> 16) | 0x40u;
  const bool is_nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return static_cast<std::uint16_t>(is_nan ? nan : rounded);
}

}  // namespace ringfuse::reduce::detail
