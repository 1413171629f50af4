#include "memory/fusion_buffer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/combine.hpp"
#include "reduce/half.hpp"

namespace ringfuse::memory {
namespace {

// An integer from a scaled value: truncated toward zero, as Horovod scales integer tensors.
// A plain cast of a value out of T's range (or NaN) is UB, so those saturate (NaN gives 0).
template <class T>
T truncate_to(double v) {
  using L = std::numeric_limits<T>;
  if (std::isnan(v)) return T(0);
  // max() + 1 and min() - 1 are exact powers of two (or, for i64, round to them), so the
  // comparisons are exact and everything strictly between truncates into range.
  if (v >= static_cast<double>(L::max()) + 1.0) return L::max();
  if (v <= static_cast<double>(L::min()) - 1.0) return L::min();
  return static_cast<T>(v);
}

double load(const void* p, DataType type, std::size_t i) {
  switch (type) {
    case DataType::f16: return reduce::f16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    case DataType::bf16: return reduce::bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    case DataType::f32: return static_cast<const float*>(p)[i];
    case DataType::f64: return static_cast<const double*>(p)[i];
    case DataType::i8: return static_cast<const std::int8_t*>(p)[i];
    case DataType::u8: return static_cast<const std::uint8_t*>(p)[i];
    case DataType::i32: return static_cast<const std::int32_t*>(p)[i];
    case DataType::i64: return static_cast<double>(static_cast<const std::int64_t*>(p)[i]);
    case DataType::i16: return static_cast<const std::int16_t*>(p)[i];
    case DataType::boolean: return static_cast<const std::uint8_t*>(p)[i] != 0 ? 1.0 : 0.0;
  }
  return 0;
}

void store(void* p, DataType type, std::size_t i, double v) {
  switch (type) {
    case DataType::f16:
      static_cast<std::uint16_t*>(p)[i] = reduce::float_to_f16(static_cast<float>(v));
      break;
    case DataType::bf16:
      static_cast<std::uint16_t*>(p)[i] = reduce::float_to_bf16(static_cast<float>(v));
      break;
    case DataType::f32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DataType::f64: static_cast<double*>(p)[i] = v; break;
    case DataType::i8: static_cast<std::int8_t*>(p)[i] = truncate_to<std::int8_t>(v); break;
    case DataType::u8: static_cast<std::uint8_t*>(p)[i] = truncate_to<std::uint8_t>(v); break;
    case DataType::i16: static_cast<std::int16_t*>(p)[i] = truncate_to<std::int16_t>(v); break;
    case DataType::i32: static_cast<std::int32_t*>(p)[i] = truncate_to<std::int32_t>(v); break;
    case DataType::i64: static_cast<std::int64_t*>(p)[i] = truncate_to<std::int64_t>(v); break;
    case DataType::boolean: static_cast<std::uint8_t*>(p)[i] = v != 0 ? 1 : 0; break;
  }
}

// One integer type scaled into itself (prescale/postscale), without the per-element switch.
template <class T>
void scale_integers(void* dst, const void* src, std::size_t count, double factor) {
  const auto* s = static_cast<const T*>(src);
  auto* d = static_cast<T*>(dst);
  for (std::size_t i = 0; i < count; ++i) {
    d[i] = truncate_to<T>(static_cast<double>(s[i]) * factor);
  }
}

template <class T>
void fill(void* dst, std::size_t count, T value) {
  auto* p = static_cast<T*>(dst);
  for (std::size_t i = 0; i < count; ++i) p[i] = value;
}

template <class T>
void fill_limits(void* dst, ReduceOp op, std::size_t count) {
  using L = std::numeric_limits<T>;
  const T low = L::has_infinity ? -L::infinity() : L::lowest();
  const T high = L::has_infinity ? L::infinity() : L::max();
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: fill<T>(dst, count, T(0)); break;
    case ReduceOp::prod: fill<T>(dst, count, T(1)); break;
    case ReduceOp::min: fill<T>(dst, count, high); break;
    case ReduceOp::max: fill<T>(dst, count, low); break;
    case ReduceOp::bor:
    case ReduceOp::bxor: fill<T>(dst, count, T(0)); break;
    case ReduceOp::band:
      if constexpr (std::is_integral_v<T>) fill<T>(dst, count, static_cast<T>(~T(0)));
      break;  // not defined on floating point (ringfuse::is_defined)
  }
}

}  // namespace

std::byte* FusionBuffer::data(std::size_t bytes) {
  constexpr std::size_t kSmallest = std::size_t{1} << 20;
  if (bytes > allocated_ && allocated_ < capacity_) {
    const std::size_t grown = std::min(capacity_, std::max({bytes, 2 * allocated_, kSmallest}));
    data_.reset();  // give the old pages back before touching the new ones
    data_ = std::make_unique_for_overwrite<std::byte[]>(grown);
    std::memset(data_.get(), 0, grown);  // fault every page in now, once
    allocated_ = grown;
  }
  return data_.get();
}

void convert_scaled(void* dst, DataType dst_type, const void* src, DataType src_type,
                    std::size_t count, double factor) {
  if (dst_type == src_type && factor == 1.0) {
    if (dst != src && count > 0) std::memmove(dst, src, count * element_size(dst_type));
    return;
  }
  if (dst_type == DataType::f32 && src_type == DataType::f32) {
    // The factor in double: rounded to float first, 1/7 would make 42/7 come back 6.0000005.
    const auto* s = static_cast<const float*>(src);
    auto* d = static_cast<float*>(dst);
    for (std::size_t i = 0; i < count; ++i) d[i] = static_cast<float>(s[i] * factor);
    return;
  }
  if (dst_type == DataType::f64 && src_type == DataType::f64) {
    const auto* s = static_cast<const double*>(src);
    auto* d = static_cast<double*>(dst);
    for (std::size_t i = 0; i < count; ++i) d[i] = s[i] * factor;
    return;
  }
  if (dst_type == src_type) {
    switch (dst_type) {
      case DataType::i8: return scale_integers<std::int8_t>(dst, src, count, factor);
      case DataType::u8: return scale_integers<std::uint8_t>(dst, src, count, factor);
      case DataType::i16: return scale_integers<std::int16_t>(dst, src, count, factor);
      case DataType::i32: return scale_integers<std::int32_t>(dst, src, count, factor);
      case DataType::i64: return scale_integers<std::int64_t>(dst, src, count, factor);
      default: break;
    }
  }
  for (std::size_t i = 0; i < count; ++i) store(dst, dst_type, i, load(src, src_type, i) * factor);
}

void fill_identity(void* dst, DataType type, ReduceOp op, std::size_t count) {
  switch (type) {
    case DataType::f16:
    case DataType::bf16: {
      float value = 0;
      if (op == ReduceOp::prod) value = 1;
      if (op == ReduceOp::min) value = std::numeric_limits<float>::infinity();
      if (op == ReduceOp::max) value = -std::numeric_limits<float>::infinity();
      const auto bits = type == DataType::f16 ? reduce::float_to_f16(value)
                                              : reduce::float_to_bf16(value);
      fill<std::uint16_t>(dst, count, bits);
      break;
    }
    case DataType::f32: fill_limits<float>(dst, op, count); break;
    case DataType::f64: fill_limits<double>(dst, op, count); break;
    case DataType::i8: fill_limits<std::int8_t>(dst, op, count); break;
    case DataType::u8: fill_limits<std::uint8_t>(dst, op, count); break;
    case DataType::i32: fill_limits<std::int32_t>(dst, op, count); break;
    case DataType::i64: fill_limits<std::int64_t>(dst, op, count); break;
    case DataType::i16: fill_limits<std::int16_t>(dst, op, count); break;
    case DataType::boolean: {
      // true for and, false for or and exclusive or.
      fill<std::uint8_t>(dst, count, core::is_logical_and(op) ? 1 : 0);
      break;
    }
  }
}

}  // namespace ringfuse::memory
