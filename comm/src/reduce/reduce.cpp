#include "reduce/reduce.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "core/undefined_reduction.hpp"
#include "reduce/half_impl.hpp"
#include "ringfuse/error.hpp"

// x86 gets runtime-dispatched AVX2 (+F16C) variants of the half-precision kernels.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RINGFUSE_REDUCE_HAVE_F16C_PATH 1
#endif

namespace ringfuse::reduce {
namespace {

// Element-wise operators. Integer sum/prod go through the unsigned type so that overflow
// wraps modulo 2^bits instead of being UB; the conversion back is modular in C++20.
struct Sum {
  template <class T>
  T operator()(T x, T y) const {
    if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      return static_cast<T>(static_cast<U>(static_cast<U>(x) + static_cast<U>(y)));
    } else {
      return x + y;
    }
  }
};

struct Prod {
  template <class T>
  T operator()(T x, T y) const {
    if constexpr (std::is_integral_v<T>) {
      // Multiplied as unsigned, at least as wide as unsigned int: narrower unsigned operands
      // would promote to int, where 65535 * 65535 (u16 from i16) overflows, which is UB.
      using U = std::make_unsigned_t<T>;
      using W = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned, U>;
      return static_cast<T>(static_cast<U>(static_cast<W>(static_cast<U>(x)) *
                                           static_cast<W>(static_cast<U>(y))));
    } else {
      return x * y;
    }
  }
};

// Written as compare-and-select (not std::min) so x86 lowers them to minps/maxps etc.;
// with a NaN operand they return one of the operands, which is all the contract asks.
struct Min {
  template <class T>
  T operator()(T x, T y) const { return y < x ? y : x; }
};

struct Max {
  template <class T>
  T operator()(T x, T y) const { return x < y ? y : x; }
};

// Bitwise, for integer types only (ringfuse::is_defined refuses them on floating point).
struct BitAnd {
  template <class T>
  T operator()(T x, T y) const { return static_cast<T>(x & y); }
};

struct BitOr {
  template <class T>
  T operator()(T x, T y) const { return static_cast<T>(x | y); }
};

struct BitXor {
  template <class T>
  T operator()(T x, T y) const { return static_cast<T>(x ^ y); }
};

// On bools (one byte, nonzero is true) sum, max and bor are logical or, min, prod and band
// logical and, bxor logical exclusive or. Results are always 0 or 1, whatever nonzero bytes
// came in. Branch-free, so they vectorize.
struct LogicalOr {
  std::uint8_t operator()(std::uint8_t x, std::uint8_t y) const {
    return static_cast<std::uint8_t>((x | y) != 0);
  }
};

struct LogicalAnd {
  std::uint8_t operator()(std::uint8_t x, std::uint8_t y) const {
    return static_cast<std::uint8_t>((x != 0) & (y != 0));
  }
};

struct LogicalXor {
  std::uint8_t operator()(std::uint8_t x, std::uint8_t y) const {
    return static_cast<std::uint8_t>((x != 0) ^ (y != 0));
  }
};

template <class Op>
using LogicalOf = std::conditional_t<
    std::is_same_v<Op, BitXor>, LogicalXor,
    std::conditional_t<std::is_same_v<Op, Sum> || std::is_same_v<Op, Max> ||
                           std::is_same_v<Op, BitOr>,
                       LogicalOr, LogicalAnd>>;

// Four loop shapes so every pointer can be __restrict: writing through `out` while reading
// the same element through another restrict pointer would be UB, so each permitted aliasing
// pattern (out == a, out == b, all equal) gets its own loop.
template <class T, class Op>
[[gnu::always_inline]] inline void loop_distinct(T* __restrict out, const T* __restrict a, const T* __restrict b,
                   std::size_t n) {
  const Op op;
  for (std::size_t i = 0; i < n; ++i) out[i] = op(a[i], b[i]);
}

template <class T, class Op, bool kDstIsRight>
[[gnu::always_inline]] inline void loop_inplace(T* __restrict dst, const T* __restrict src, std::size_t n) {
  const Op op;
  for (std::size_t i = 0; i < n; ++i) {
    // Keep operand order so non-commutative cases (min/max with NaN) match reduce(a, b).
    dst[i] = kDstIsRight ? op(src[i], dst[i]) : op(dst[i], src[i]);
  }
}

template <class T, class Op>
[[gnu::always_inline]] inline void loop_self(T* __restrict buf, std::size_t n) {
  const Op op;
  for (std::size_t i = 0; i < n; ++i) buf[i] = op(buf[i], buf[i]);
}

template <class T, class Op>
[[gnu::always_inline]] inline void reduce_plain(T* out, const T* a, const T* b, std::size_t n) {
  if (out == a && out == b) {
    loop_self<T, Op>(out, n);
  } else if (out == a) {
    loop_inplace<T, Op, false>(out, b, n);
  } else if (out == b) {
    loop_inplace<T, Op, true>(out, a, n);
  } else {
    loop_distinct<T, Op>(out, a, b, n);
  }
}

// f16/bf16 are widened a chunk at a time into stack buffers, combined in float and narrowed
// once. The chunk is small enough to stay in L1 and, because a whole chunk of both inputs is
// read before any of it is written, aliasing of out with a or b needs no special casing.
constexpr std::size_t kChunk = 512;

struct Bf16Convert {
  static void widen(const std::uint16_t* __restrict src, float* __restrict dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = detail::bf16_bits_to_float(src[i]);
  }
  static void narrow(const float* __restrict src, std::uint16_t* __restrict dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = detail::float_to_bf16_bits(src[i]);
  }
};

// Portable f16 path for CPUs without F16C: branchy scalar conversions, correct but slower.
struct F16ScalarConvert {
  static void widen(const std::uint16_t* __restrict src, float* __restrict dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = detail::f16_bits_to_float(src[i]);
  }
  static void narrow(const float* __restrict src, std::uint16_t* __restrict dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = detail::float_to_f16_bits(src[i]);
  }
};

template <class Op>
void combine_floats(float* __restrict acc, const float* __restrict other, std::size_t n) {
  const Op op;
  for (std::size_t i = 0; i < n; ++i) acc[i] = op(acc[i], other[i]);
}

template <class Convert, class Op>
void reduce_half_generic(std::uint16_t* out, const std::uint16_t* a, const std::uint16_t* b,
                         std::size_t n) {
  alignas(64) float fa[kChunk];
  alignas(64) float fb[kChunk];
  for (std::size_t base = 0; base < n; base += kChunk) {
    const std::size_t m = std::min(kChunk, n - base);
    Convert::widen(a + base, fa, m);
    Convert::widen(b + base, fb, m);
    combine_floats<Op>(fa, fb, m);
    Convert::narrow(fa, out + base, m);
  }
}

#ifdef RINGFUSE_REDUCE_HAVE_F16C_PATH
// The half-precision kernels for AVX2: 8 elements at a time are widened to float in
// registers, combined, rounded back and stored, in one pass (widening into stack buffers
// first ran at 7-15 GB/s, a sixth of memcpy's speed in cache). Reading a[i..i+8) and
// b[i..i+8) before writing out[i..i+8) keeps out == a and out == b correct.

// Op on 8 floats, with the scalar operators' operand order (Min(x, y) = y < x ? y : x is
// minps(y, x), and likewise for max), so NaN cases give what the scalar loop gives.
template <class Op>
__attribute__((target("avx2"))) inline __m256 combine8(__m256 x, __m256 y) {
  if constexpr (std::is_same_v<Op, Sum>) {
    return _mm256_add_ps(x, y);
  } else if constexpr (std::is_same_v<Op, Prod>) {
    return _mm256_mul_ps(x, y);
  } else if constexpr (std::is_same_v<Op, Min>) {
    return _mm256_min_ps(y, x);
  } else {
    static_assert(std::is_same_v<Op, Max>);
    return _mm256_max_ps(y, x);
  }
}

// F16C converts with IEEE round-to-nearest-even (subnormals, inf and NaN included), matching
// the scalar conversions bit for bit on non-NaN values.
template <class Op>
__attribute__((target("avx2,f16c"))) void reduce_f16_f16c(std::uint16_t* out,
                                                          const std::uint16_t* a,
                                                          const std::uint16_t* b,
                                                          std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256 y = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    const __m128i h =
        _mm256_cvtps_ph(combine8<Op>(x, y), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  const Op op;
  for (; i < n; ++i) {
    out[i] = detail::float_to_f16_bits(
        op(detail::f16_bits_to_float(a[i]), detail::f16_bits_to_float(b[i])));
  }
}

// detail::float_to_bf16_bits on 8 floats, the result in the low 16 bits of each 32-bit lane:
// round to nearest even by adding 0x7fff plus the lowest kept bit; a NaN is truncated with its
// quiet bit forced instead.
__attribute__((target("avx2"))) inline __m256i narrow8_bf16(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i high = _mm256_srli_epi32(bits, 16);
  const __m256i lowest_kept = _mm256_and_si256(high, _mm256_set1_epi32(1));
  const __m256i rounded = _mm256_srli_epi32(
      _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), lowest_kept), 16);
  const __m256i quiet_nan = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
  const __m256i is_nan = _mm256_cmpgt_epi32(
      _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
  return _mm256_blendv_epi8(rounded, quiet_nan, is_nan);
}

// Two narrow8_bf16 results as 16 halves in order. Every lane is below 0x10000, so the
// saturating pack is exact; it packs within 128-bit halves, and the permute restores order.
__attribute__((target("avx2"))) inline __m256i pack16_bf16(__m256i low, __m256i high) {
  return _mm256_permute4x64_epi64(_mm256_packus_epi32(low, high), 0b11011000);
}

__attribute__((target("avx2"))) inline __m256 widen8_bf16(const std::uint16_t* p) {
  const __m256i wide =
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

template <class Op>
__attribute__((target("avx2"))) void reduce_bf16_avx2(std::uint16_t* out,
                                                      const std::uint16_t* a,
                                                      const std::uint16_t* b, std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i low = narrow8_bf16(combine8<Op>(widen8_bf16(a + i), widen8_bf16(b + i)));
    const __m256i high =
        narrow8_bf16(combine8<Op>(widen8_bf16(a + i + 8), widen8_bf16(b + i + 8)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), pack16_bf16(low, high));
  }
  const Op op;
  for (; i < n; ++i) {
    out[i] = detail::float_to_bf16_bits(
        op(detail::bf16_bits_to_float(a[i]), detail::bf16_bits_to_float(b[i])));
  }
}

bool have_avx2() { return __builtin_cpu_supports("avx2"); }

// The plain loops again, compiled for AVX2 (they are inlined into this entry point): the
// baseline build's 16-byte vectors ran f32/f64/i32 reductions at ~40% of memcpy's speed in
// cache (perf/RESULTS.md, "Reduction kernels").
template <class T, class Op>
__attribute__((target("avx2"))) void reduce_plain_avx2(T* out, const T* a, const T* b,
                                                       std::size_t n) {
  reduce_plain<T, Op>(out, a, b, n);
}

bool have_f16c() {
  // CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does not know "f16c"); asked
  // once, the answer cannot change while the process runs.
  static const bool f16c = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return f16c && have_avx2();
}
#endif

[[noreturn]] void throw_bad_combination(DataType type, ReduceOp op) {
  throw Error(ErrorKind::invalid_argument,
              "reduce: unsupported data type/op combination (type " +
                  std::to_string(static_cast<int>(type)) + ", op " +
                  std::to_string(static_cast<int>(op)) +
                  "); pass a DataType and ReduceOp from ringfuse/types.hpp");
}

[[noreturn]] void throw_undefined(DataType type, ReduceOp op) {
  throw Error(ErrorKind::invalid_argument, "reduce: " + core::undefined_reduction(type, op));
}

template <class T, class Op>
void reduce_typed(void* out, const void* a, const void* b, std::size_t n) {
  auto* o = static_cast<T*>(out);
  const auto* x = static_cast<const T*>(a);
  const auto* y = static_cast<const T*>(b);
#ifdef RINGFUSE_REDUCE_HAVE_F16C_PATH
  if (have_avx2()) return reduce_plain_avx2<T, Op>(o, x, y, n);
#endif
  reduce_plain<T, Op>(o, x, y, n);
}

template <class Op>
void reduce_bitwise(void* out, const void* a, const void* b, std::size_t n, DataType type,
                    ReduceOp op) {
  switch (type) {
    case DataType::i8: return reduce_typed<std::int8_t, Op>(out, a, b, n);
    case DataType::u8: return reduce_typed<std::uint8_t, Op>(out, a, b, n);
    case DataType::i16: return reduce_typed<std::int16_t, Op>(out, a, b, n);
    case DataType::i32: return reduce_typed<std::int32_t, Op>(out, a, b, n);
    case DataType::i64: return reduce_typed<std::int64_t, Op>(out, a, b, n);
    case DataType::boolean: return reduce_typed<std::uint8_t, LogicalOf<Op>>(out, a, b, n);
    case DataType::f16:
    case DataType::bf16:
    case DataType::f32:
    case DataType::f64: throw_undefined(type, op);
  }
  throw_bad_combination(type, op);
}

template <class Op>
void reduce_with_op(void* out, const void* a, const void* b, std::size_t n, DataType type,
                    ReduceOp op) {
  switch (type) {
    case DataType::f16: {
      auto* o = static_cast<std::uint16_t*>(out);
      const auto* x = static_cast<const std::uint16_t*>(a);
      const auto* y = static_cast<const std::uint16_t*>(b);
#ifdef RINGFUSE_REDUCE_HAVE_F16C_PATH
      if (have_f16c()) return reduce_f16_f16c<Op>(o, x, y, n);
#endif
      return reduce_half_generic<F16ScalarConvert, Op>(o, x, y, n);
    }
    case DataType::bf16: {
      auto* o = static_cast<std::uint16_t*>(out);
      const auto* x = static_cast<const std::uint16_t*>(a);
      const auto* y = static_cast<const std::uint16_t*>(b);
#ifdef RINGFUSE_REDUCE_HAVE_F16C_PATH
      if (have_avx2()) return reduce_bf16_avx2<Op>(o, x, y, n);
#endif
      return reduce_half_generic<Bf16Convert, Op>(o, x, y, n);
    }
    case DataType::f32: return reduce_typed<float, Op>(out, a, b, n);
    case DataType::f64: return reduce_typed<double, Op>(out, a, b, n);
    case DataType::i8: return reduce_typed<std::int8_t, Op>(out, a, b, n);
    case DataType::u8: return reduce_typed<std::uint8_t, Op>(out, a, b, n);
    case DataType::i16: return reduce_typed<std::int16_t, Op>(out, a, b, n);
    case DataType::i32: return reduce_typed<std::int32_t, Op>(out, a, b, n);
    case DataType::i64: return reduce_typed<std::int64_t, Op>(out, a, b, n);
    case DataType::boolean:
      if (op == ReduceOp::avg) throw_undefined(type, op);
      return reduce_typed<std::uint8_t, LogicalOf<Op>>(out, a, b, n);
  }
  throw_bad_combination(type, op);
}

template <class T>
void divide_float(T* __restrict buf, std::size_t n, std::size_t divisor) {
  // A true division (not a multiply by the reciprocal) keeps the result correctly rounded.
  const T d = static_cast<T>(divisor);
  for (std::size_t i = 0; i < n; ++i) buf[i] = buf[i] / d;
}

template <class Convert>
void divide_half(std::uint16_t* buf, std::size_t n, std::size_t divisor) {
  alignas(64) float tmp[kChunk];
  for (std::size_t base = 0; base < n; base += kChunk) {
    const std::size_t m = std::min(kChunk, n - base);
    Convert::widen(buf + base, tmp, m);
    divide_float<float>(tmp, m, divisor);
    Convert::narrow(tmp, buf + base, m);
  }
}

#ifdef RINGFUSE_REDUCE_HAVE_F16C_PATH
// divide_half's f16 loop with F16C conversions: the scalar converter made an f16 avg's final
// divide ~15x slower than the reduction itself (perf/RESULTS.md).
__attribute__((target("avx2,f16c"))) void divide_f16_f16c(std::uint16_t* buf, std::size_t n,
                                                          std::size_t divisor) {
  alignas(64) float tmp[kChunk];
  const float d = static_cast<float>(divisor);
  for (std::size_t base = 0; base < n; base += kChunk) {
    const std::size_t m = std::min(kChunk, n - base);
    std::size_t i = 0;
    for (; i + 8 <= m; i += 8) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(buf + base + i));
      _mm256_store_ps(tmp + i, _mm256_cvtph_ps(h));
    }
    for (; i < m; ++i) tmp[i] = detail::f16_bits_to_float(buf[base + i]);
    for (std::size_t j = 0; j < m; ++j) tmp[j] = tmp[j] / d;
    i = 0;
    for (; i + 8 <= m; i += 8) {
      const __m128i h = _mm256_cvtps_ph(_mm256_load_ps(tmp + i),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(buf + base + i), h);
    }
    for (; i < m; ++i) buf[base + i] = detail::float_to_f16_bits(tmp[i]);
  }
}
#endif

template <class T>
void divide_int(T* __restrict buf, std::size_t n, std::size_t divisor) {
  if (divisor <= static_cast<std::size_t>(std::numeric_limits<T>::max())) {
    // The divisor is a positive T, so built-in division truncates toward zero and cannot
    // overflow (no T::min / -1).
    const T d = static_cast<T>(divisor);
    for (std::size_t i = 0; i < n; ++i) buf[i] = static_cast<T>(buf[i] / d);
    return;
  }
  // A divisor beyond T's range: divide the magnitude in 64-bit unsigned arithmetic, which
  // also gets T::min / 2^(bits-1) == -1 right.
  for (std::size_t i = 0; i < n; ++i) {
    const T x = buf[i];
    bool negative = false;
    if constexpr (std::is_signed_v<T>) negative = x < 0;
    const auto magnitude = negative ? std::uint64_t{0} - static_cast<std::uint64_t>(x)
                                    : static_cast<std::uint64_t>(x);
    const std::uint64_t q = magnitude / divisor;
    buf[i] = static_cast<T>(negative ? std::uint64_t{0} - q : q);
  }
}

}  // namespace

void reduce(void* out, const void* a, const void* b, std::size_t count, DataType type,
            ReduceOp op) {
  if (count == 0) return;
  if (out == nullptr || a == nullptr || b == nullptr) {
    throw Error(ErrorKind::invalid_argument,
                "reduce: null buffer with count " + std::to_string(count) +
                    "; pass valid buffers of count elements");
  }
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return reduce_with_op<Sum>(out, a, b, count, type, op);
    case ReduceOp::min: return reduce_with_op<Min>(out, a, b, count, type, op);
    case ReduceOp::max: return reduce_with_op<Max>(out, a, b, count, type, op);
    case ReduceOp::prod: return reduce_with_op<Prod>(out, a, b, count, type, op);
    case ReduceOp::band: return reduce_bitwise<BitAnd>(out, a, b, count, type, op);
    case ReduceOp::bor: return reduce_bitwise<BitOr>(out, a, b, count, type, op);
    case ReduceOp::bxor: return reduce_bitwise<BitXor>(out, a, b, count, type, op);
  }
  throw_bad_combination(type, op);
}

void reduce_into(void* dst, const void* src, std::size_t count, DataType type, ReduceOp op) {
  reduce(dst, dst, src, count, type, op);
}

void divide(void* buf, std::size_t count, DataType type, std::size_t divisor) {
  if (divisor == 0) {
    throw Error(ErrorKind::invalid_argument,
                "reduce: divide by zero (avg over zero contributions); the divisor must be "
                "the number of ranks, at least 1");
  }
  // Before the early returns: a world of one must refuse what every other world refuses.
  if (type == DataType::boolean) throw_undefined(type, ReduceOp::avg);
  if (count == 0 || divisor == 1) return;
  if (buf == nullptr) {
    throw Error(ErrorKind::invalid_argument,
                "reduce: divide on a null buffer with count " + std::to_string(count));
  }
  switch (type) {
    case DataType::f16:
#ifdef RINGFUSE_REDUCE_HAVE_F16C_PATH
      if (have_f16c()) return divide_f16_f16c(static_cast<std::uint16_t*>(buf), count, divisor);
#endif
      return divide_half<F16ScalarConvert>(static_cast<std::uint16_t*>(buf), count, divisor);
    case DataType::bf16:
      return divide_half<Bf16Convert>(static_cast<std::uint16_t*>(buf), count, divisor);
    case DataType::f32: return divide_float(static_cast<float*>(buf), count, divisor);
    case DataType::f64: return divide_float(static_cast<double*>(buf), count, divisor);
    case DataType::i8: return divide_int(static_cast<std::int8_t*>(buf), count, divisor);
    case DataType::u8: return divide_int(static_cast<std::uint8_t*>(buf), count, divisor);
    case DataType::i16: return divide_int(static_cast<std::int16_t*>(buf), count, divisor);
    case DataType::i32: return divide_int(static_cast<std::int32_t*>(buf), count, divisor);
    case DataType::i64: return divide_int(static_cast<std::int64_t*>(buf), count, divisor);
    case DataType::boolean: throw_undefined(type, ReduceOp::avg);
  }
  throw Error(ErrorKind::invalid_argument,
              "reduce: divide on unknown data type " + std::to_string(static_cast<int>(type)));
}

}  // namespace ringfuse::reduce
