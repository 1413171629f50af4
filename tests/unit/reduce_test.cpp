// Reduction kernels against a per-element scalar reference, plus f16/bf16 conversion edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/combine.hpp"
#include "reduce/half.hpp"
#include "reduce/reduce.hpp"
#include "ringfuse/error.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse::reduce {
namespace {

using Bytes = std::vector<std::uint8_t>;

template <class T>
T load(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
void store(std::uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

bool f16_is_nan(std::uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool bf16_is_nan(std::uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

// Integers are combined in __int128, where nothing overflows, then truncated to T: this is
// the wrap-around the kernels must reproduce without UB.
template <class T>
T ref_int_op(ReduceOp op, T x, T y) {
  const auto wx = static_cast<__int128>(x);
  const auto wy = static_cast<__int128>(y);
  __int128 r = 0;
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: r = wx + wy; break;
    case ReduceOp::prod: r = wx * wy; break;
    case ReduceOp::min: r = std::min(wx, wy); break;
    case ReduceOp::max: r = std::max(wx, wy); break;
    case ReduceOp::band: r = wx & wy; break;
    case ReduceOp::bor: r = wx | wy; break;
    case ReduceOp::bxor: r = wx ^ wy; break;
  }
  return static_cast<T>(static_cast<unsigned __int128>(r) &
                        std::numeric_limits<std::make_unsigned_t<T>>::max());
}

void ref_element(DataType type, ReduceOp op, const std::uint8_t* a, const std::uint8_t* b,
                 std::uint8_t* out) {
  switch (type) {
    case DataType::f16: {
      const float r = core::combine(op, f16_to_float(load<std::uint16_t>(a)),
                                    f16_to_float(load<std::uint16_t>(b)));
      return store(out, float_to_f16(r));
    }
    case DataType::bf16: {
      const float r = core::combine(op, bf16_to_float(load<std::uint16_t>(a)),
                                    bf16_to_float(load<std::uint16_t>(b)));
      return store(out, float_to_bf16(r));
    }
    case DataType::f32:
      return store(out, core::combine(op, load<float>(a), load<float>(b)));
    case DataType::f64:
      return store(out, core::combine(op, load<double>(a), load<double>(b)));
    case DataType::i8:
      return store(out, ref_int_op(op, load<std::int8_t>(a), load<std::int8_t>(b)));
    case DataType::u8:
      return store(out, ref_int_op(op, load<std::uint8_t>(a), load<std::uint8_t>(b)));
    case DataType::i32:
      return store(out, ref_int_op(op, load<std::int32_t>(a), load<std::int32_t>(b)));
    case DataType::i64:
      return store(out, ref_int_op(op, load<std::int64_t>(a), load<std::int64_t>(b)));
    case DataType::i16:
      return store(out, ref_int_op(op, load<std::int16_t>(a), load<std::int16_t>(b)));
    case DataType::boolean: {
      // Any nonzero byte is true; sum, max and bor are or, min, prod and band and, bxor
      // exclusive or; the result is 0 or 1.
      const bool x = *a != 0;
      const bool y = *b != 0;
      return store(out, static_cast<std::uint8_t>(core::combine_bools(op, x, y)));
    }
  }
}

bool same_element(DataType type, const std::uint8_t* x, const std::uint8_t* y) {
  switch (type) {
    case DataType::f16:
      if (f16_is_nan(load<std::uint16_t>(x))) return f16_is_nan(load<std::uint16_t>(y));
      break;
    case DataType::bf16:
      if (bf16_is_nan(load<std::uint16_t>(x))) return bf16_is_nan(load<std::uint16_t>(y));
      break;
    case DataType::f32:
      if (std::isnan(load<float>(x))) return std::isnan(load<float>(y));
      break;
    case DataType::f64:
      if (std::isnan(load<double>(x))) return std::isnan(load<double>(y));
      break;
    default: break;
  }
  return std::memcmp(x, y, element_size(type)) == 0;
}

// Half the half-precision elements come from moderate floats (so sums hit rounding ties),
// half are arbitrary finite bit patterns (subnormals, huge values, overflow to inf).
Bytes random_buffer(DataType type, std::size_t count, std::mt19937_64& rng) {
  const std::size_t size = element_size(type);
  Bytes buf(count * size);
  std::uniform_real_distribution<double> moderate(-1000.0, 1000.0);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint8_t* p = buf.data() + i * size;
    const std::uint64_t bits = rng();
    switch (type) {
      case DataType::f16: {
        auto h = static_cast<std::uint16_t>(bits);
        if (i % 2 == 0) h = float_to_f16(static_cast<float>(moderate(rng)));
        if ((h & 0x7c00u) == 0x7c00u) h &= 0xbfffu;  // keep inputs finite
        store(p, h);
        break;
      }
      case DataType::bf16: {
        auto h = static_cast<std::uint16_t>(bits);
        if (i % 2 == 0) h = float_to_bf16(static_cast<float>(moderate(rng)));
        if ((h & 0x7f80u) == 0x7f80u) h &= 0xbfffu;
        store(p, h);
        break;
      }
      case DataType::f32: store(p, static_cast<float>(moderate(rng))); break;
      case DataType::f64: store(p, moderate(rng)); break;
      default: std::memcpy(p, &bits, size); break;  // integers: full range, so sums wrap
    }
  }
  return buf;
}

Bytes reference(DataType type, ReduceOp op, const Bytes& a, const Bytes& b, std::size_t count) {
  const std::size_t size = element_size(type);
  Bytes out(count * size);
  for (std::size_t i = 0; i < count; ++i) {
    ref_element(type, op, a.data() + i * size, b.data() + i * size, out.data() + i * size);
  }
  return out;
}

// Reports the first mismatching element rather than dumping megabytes.
::testing::AssertionResult buffers_match(DataType type, const Bytes& expected,
                                         const Bytes& actual, std::size_t count) {
  const std::size_t size = element_size(type);
  if (expected.size() != actual.size()) return ::testing::AssertionFailure() << "size differs";
  for (std::size_t i = 0; i < count; ++i) {
    if (!same_element(type, expected.data() + i * size, actual.data() + i * size)) {
      std::uint64_t e = 0;
      std::uint64_t g = 0;
      std::memcpy(&e, expected.data() + i * size, size);
      std::memcpy(&g, actual.data() + i * size, size);
      return ::testing::AssertionFailure()
             << "element " << i << " of " << count << ": expected bits 0x" << std::hex << e
             << ", got 0x" << g;
    }
  }
  return ::testing::AssertionSuccess();
}

using KernelParam = std::tuple<DataType, ReduceOp, std::size_t>;

class ReduceKernelTest : public ::testing::TestWithParam<KernelParam> {};

TEST_P(ReduceKernelTest, MatchesScalarReferenceForEveryAliasing) {
  const auto [type, op, count] = GetParam();
  if (!is_defined(type, op)) {
    // The average of bools, a bitwise operator on floating point: refused, whatever the
    // buffers, before reading them.
    Bytes a(count, 1);
    if (count > 0) {
      EXPECT_THROW(reduce_into(a.data(), a.data(), count, type, op), Error);
    }
    return;
  }
  std::mt19937_64 rng(0x5eed ^ (static_cast<std::uint64_t>(type) << 8) ^
                      static_cast<std::uint64_t>(op) ^ count);
  const Bytes a = random_buffer(type, count, rng);
  const Bytes b = random_buffer(type, count, rng);
  const Bytes expected = reference(type, op, a, b, count);

  Bytes out(a.size(), 0xcd);
  reduce(out.data(), a.data(), b.data(), count, type, op);
  EXPECT_TRUE(buffers_match(type, expected, out, count)) << "distinct buffers";

  Bytes out_is_a = a;
  reduce(out_is_a.data(), out_is_a.data(), b.data(), count, type, op);
  EXPECT_TRUE(buffers_match(type, expected, out_is_a, count)) << "out == a";

  Bytes out_is_b = b;
  reduce(out_is_b.data(), a.data(), out_is_b.data(), count, type, op);
  EXPECT_TRUE(buffers_match(type, expected, out_is_b, count)) << "out == b";

  Bytes dst = a;
  reduce_into(dst.data(), b.data(), count, type, op);
  EXPECT_TRUE(buffers_match(type, expected, dst, count)) << "reduce_into";

  const Bytes expected_self = reference(type, op, a, a, count);
  Bytes self = a;
  reduce_into(self.data(), self.data(), count, type, op);
  EXPECT_TRUE(buffers_match(type, expected_self, self, count)) << "dst == src";

  // Reading a twice (a == b) while writing elsewhere is allowed too.
  Bytes out_twice(a.size(), 0xcd);
  reduce(out_twice.data(), a.data(), a.data(), count, type, op);
  EXPECT_TRUE(buffers_match(type, expected_self, out_twice, count)) << "a == b";
}

std::string kernel_param_name(const ::testing::TestParamInfo<KernelParam>& info) {
  const auto [type, op, count] = info.param;
  return std::string(to_string(type)) + "_" + std::string(to_string(op)) + "_" +
         std::to_string(count);
}

INSTANTIATE_TEST_SUITE_P(AllTypesAndOps, ReduceKernelTest,
                         ::testing::Combine(::testing::ValuesIn(kAllDataTypes),
                                            ::testing::ValuesIn(kAllReduceOps),
                                            ::testing::Values(std::size_t{0}, std::size_t{1},
                                                              std::size_t{7},
                                                              std::size_t{1000003})),
                         kernel_param_name);

TEST(ReduceKernel, CountZeroTouchesNothingAndAcceptsNull) {
  for (DataType type : kAllDataTypes) {
    for (ReduceOp op : kAllReduceOps) {
      EXPECT_NO_THROW(reduce(nullptr, nullptr, nullptr, 0, type, op));
      EXPECT_NO_THROW(reduce_into(nullptr, nullptr, 0, type, op));
    }
  }
}

TEST(ReduceKernel, RejectsUnknownTypeOrOp) {
  std::int32_t a[2] = {1, 2};
  std::int32_t b[2] = {3, 4};
  try {
    reduce_into(a, b, 2, static_cast<DataType>(99), ReduceOp::sum);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  }
  EXPECT_THROW(reduce_into(a, b, 2, DataType::i32, static_cast<ReduceOp>(99)), Error);
  EXPECT_THROW(reduce_into(nullptr, b, 2, DataType::i32, ReduceOp::sum), Error);
}

template <class T>
std::vector<T> reduce_values(std::vector<T> a, const std::vector<T>& b, DataType type,
                             ReduceOp op) {
  reduce_into(a.data(), b.data(), a.size(), type, op);
  return a;
}

TEST(ReduceKernel, I16SumAndProdWrapWithoutOverflowingInt) {
  using I16 = std::int16_t;
  EXPECT_EQ(reduce_values<I16>({32767, -32768, 300}, {1, -1, 300}, DataType::i16, ReduceOp::sum),
            (std::vector<I16>{-32768, 32767, 600}));
  // -1 * -1 is 65535 * 65535 as u16, which overflows int if u16 promotes to it.
  EXPECT_EQ(reduce_values<I16>({-1, 256, -32768}, {-1, 256, -1}, DataType::i16, ReduceOp::prod),
            (std::vector<I16>{1, 0, -32768}));
  EXPECT_EQ(reduce_values<I16>({-5, 7}, {3, -9}, DataType::i16, ReduceOp::min),
            (std::vector<I16>{-5, -9}));
  EXPECT_EQ(reduce_values<I16>({-5, 7}, {3, -9}, DataType::i16, ReduceOp::max),
            (std::vector<I16>{3, 7}));
}

TEST(ReduceKernel, BoolSumAndMaxAreOrMinAndProdAreAnd) {
  using B = std::uint8_t;
  const std::vector<B> a{0, 0, 1, 1, 2, 0};
  const std::vector<B> b{0, 1, 0, 1, 0, 255};
  for (const ReduceOp op : {ReduceOp::sum, ReduceOp::max}) {
    EXPECT_EQ(reduce_values<B>(a, b, DataType::boolean, op), (std::vector<B>{0, 1, 1, 1, 1, 1}))
        << to_string(op);
  }
  for (const ReduceOp op : {ReduceOp::min, ReduceOp::prod}) {
    EXPECT_EQ(reduce_values<B>(a, b, DataType::boolean, op), (std::vector<B>{0, 0, 0, 1, 0, 0}))
        << to_string(op);
  }
  // Nonzero bytes other than 1 are true, and results are 0 or 1: 2 and 2 is 1, not 2.
  EXPECT_EQ(reduce_values<B>({2, 128}, {2, 128}, DataType::boolean, ReduceOp::prod),
            (std::vector<B>{1, 1}));
  std::vector<B> flags{1, 1};
  try {
    reduce_into(flags.data(), flags.data(), flags.size(), DataType::boolean, ReduceOp::avg);
    FAIL() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("avg of bool is not defined"), std::string::npos);
  }
}

TEST(ReduceKernel, IntegerSumAndProdWrap) {
  using I8 = std::int8_t;
  EXPECT_EQ(reduce_values<I8>({127, -128, 100, 1}, {1, -1, 100, -1}, DataType::i8, ReduceOp::sum),
            (std::vector<I8>{-128, 127, -56, 0}));
  EXPECT_EQ(reduce_values<I8>({16, -128, 100, -1}, {16, -1, 3, -1}, DataType::i8, ReduceOp::prod),
            (std::vector<I8>{0, -128, 44, 1}));
  // avg accumulates exactly like sum, wrap included.
  EXPECT_EQ(reduce_values<I8>({127}, {1}, DataType::i8, ReduceOp::avg), (std::vector<I8>{-128}));

  using U8 = std::uint8_t;
  EXPECT_EQ(reduce_values<U8>({200, 255, 0}, {100, 1, 255}, DataType::u8, ReduceOp::sum),
            (std::vector<U8>{44, 0, 255}));
  EXPECT_EQ(reduce_values<U8>({16, 255, 3}, {16, 255, 100}, DataType::u8, ReduceOp::prod),
            (std::vector<U8>{0, 1, 44}));

  using I32 = std::int32_t;
  constexpr I32 kMax32 = std::numeric_limits<I32>::max();
  constexpr I32 kMin32 = std::numeric_limits<I32>::min();
  EXPECT_EQ(reduce_values<I32>({kMax32, kMin32}, {1, -1}, DataType::i32, ReduceOp::sum),
            (std::vector<I32>{kMin32, kMax32}));
  EXPECT_EQ(reduce_values<I32>({65536, kMin32, 65537}, {65536, -1, 65537}, DataType::i32,
                               ReduceOp::prod),
            (std::vector<I32>{0, kMin32, 131073}));

  using I64 = std::int64_t;
  constexpr I64 kMax64 = std::numeric_limits<I64>::max();
  constexpr I64 kMin64 = std::numeric_limits<I64>::min();
  EXPECT_EQ(reduce_values<I64>({kMax64, kMin64}, {1, -1}, DataType::i64, ReduceOp::sum),
            (std::vector<I64>{kMin64, kMax64}));
  EXPECT_EQ(reduce_values<I64>({I64{1} << 32, kMin64, (I64{1} << 62) + 1},
                               {I64{1} << 32, -1, 4}, DataType::i64, ReduceOp::prod),
            (std::vector<I64>{0, kMin64, 4}));
}

TEST(ReduceKernel, FloatMinMaxWithNaNDoesNotCrash) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> a = {nan, 1.0f, nan, -2.0f, 3.0f, nan, 0.0f, 5.0f, nan};
  std::vector<float> b = {1.0f, nan, nan, -1.0f, 2.0f, 4.0f, nan, 6.0f, 7.0f};
  for (ReduceOp op : {ReduceOp::min, ReduceOp::max}) {
    std::vector<float> out(a.size());
    reduce(out.data(), a.data(), b.data(), a.size(), DataType::f32, op);
    // Where neither input is NaN the answer is exact; elsewhere any value is acceptable.
    EXPECT_EQ(out[3], op == ReduceOp::min ? -2.0f : -1.0f);
    EXPECT_EQ(out[4], op == ReduceOp::min ? 2.0f : 3.0f);
    EXPECT_EQ(out[7], op == ReduceOp::min ? 5.0f : 6.0f);
  }
  std::vector<std::uint16_t> h = {0x7e00, 0x3c00, 0x7e00, 0xfc00, 0x7c00, 0x0001, 0x7e00, 0x0000};
  std::vector<std::uint16_t> g = {0x3c00, 0x7e00, 0x7e00, 0x7e00, 0x0000, 0x8001, 0x7c00, 0x7e00};
  for (DataType type : {DataType::f16, DataType::bf16}) {
    for (ReduceOp op : kAllReduceOps) {
      if (!is_defined(type, op)) continue;  // bitwise: refused (BitwiseOperators...)
      std::vector<std::uint16_t> out(h.size());
      EXPECT_NO_THROW(reduce(out.data(), h.data(), g.data(), h.size(), type, op));
    }
  }
}

TEST(ReduceKernel, BitwiseOperatorsOnIntegersAndBools) {
  using I8 = std::int8_t;
  using U8 = std::uint8_t;
  EXPECT_EQ(reduce_values<I8>({-1, 0x5a, -128}, {0x0f, 0x3c, -1}, DataType::i8, ReduceOp::band),
            (std::vector<I8>{0x0f, 0x18, -128}));
  EXPECT_EQ(reduce_values<U8>({0xf0, 0x5a}, {0x0f, 0x3c}, DataType::u8, ReduceOp::bor),
            (std::vector<U8>{0xff, 0x7e}));
  EXPECT_EQ(reduce_values<std::int64_t>({-1, std::int64_t{1} << 40}, {1, (std::int64_t{1} << 40) | 3},
                                        DataType::i64, ReduceOp::bxor),
            (std::vector<std::int64_t>{-2, 3}));
  // Bools: band is and, bor or, bxor exclusive or, of any nonzero bytes; results are 0 or 1.
  const std::vector<U8> a{0, 0, 1, 1, 2, 128};
  const std::vector<U8> b{0, 1, 0, 1, 255, 0};
  EXPECT_EQ(reduce_values<U8>(a, b, DataType::boolean, ReduceOp::band),
            (std::vector<U8>{0, 0, 0, 1, 1, 0}));
  EXPECT_EQ(reduce_values<U8>(a, b, DataType::boolean, ReduceOp::bor),
            (std::vector<U8>{0, 1, 1, 1, 1, 1}));
  EXPECT_EQ(reduce_values<U8>(a, b, DataType::boolean, ReduceOp::bxor),
            (std::vector<U8>{0, 1, 1, 0, 0, 1}));
}

TEST(ReduceKernel, BitwiseOperatorsRefuseFloatingPointSayingWhatToDo) {
  for (DataType type : {DataType::f16, DataType::bf16, DataType::f32, DataType::f64}) {
    for (ReduceOp op : {ReduceOp::band, ReduceOp::bor, ReduceOp::bxor}) {
      EXPECT_FALSE(is_defined(type, op));
      std::vector<double> values{1.0, 2.0};
      try {
        reduce_into(values.data(), values.data(), 1, type, op);
        FAIL() << "expected an Error for " << to_string(op) << " of " << to_string(type);
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
        const std::string what = e.what();
        EXPECT_NE(what.find(std::string(to_string(op)) + " of " + std::string(to_string(type)) +
                            " is not defined"),
                  std::string::npos)
            << what;
        EXPECT_NE(what.find("integer"), std::string::npos) << what;
      }
    }
  }
}

// --- f16 ---------------------------------------------------------------------------------

// Independent decoding: (1024 + mantissa) * 2^(exp - 25) for normals, mantissa * 2^-24 below.
double f16_reference_value(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant == 0 ? sign * std::numeric_limits<double>::infinity()
                                  : std::numeric_limits<double>::quiet_NaN();
  return sign * std::ldexp(1024 + mant, exp - 25);
}

// Independent rounding: scale so one f16 ulp is 1, round with nearbyint (ties to even in the
// default rounding mode), scale back; anything past 65504 after rounding is infinity.
float f16_reference_round(float f) {
  if (std::isnan(f) || std::isinf(f)) return f;
  const double x = f;
  int e = 0;
  std::frexp(x, &e);  // |x| in [2^(e-1), 2^e)
  const int ulp_exp = std::max(e - 1 - 10, -24);
  const double rounded = std::nearbyint(std::ldexp(x, -ulp_exp));
  const double r = std::ldexp(rounded, ulp_exp);
  if (std::fabs(r) > 65504.0) return std::copysign(std::numeric_limits<float>::infinity(), f);
  return std::copysign(static_cast<float>(r), f);  // keeps -0 for tiny negatives
}

TEST(Half, F16RoundingEdgeCases) {
  EXPECT_EQ(float_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f), 0x3c00);         // tie, rounds down to even
  EXPECT_EQ(float_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);     // tie, rounds up to even
  EXPECT_EQ(float_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);  // just above the tie
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);                // largest finite
  EXPECT_EQ(float_to_f16(65519.0f), 0x7bff);                // below the overflow tie
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);                // tie with 65536 rounds to inf
  EXPECT_EQ(float_to_f16(-65520.0f), 0xfc00);
  EXPECT_EQ(float_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(float_to_f16(std::numeric_limits<float>::max()), 0x7c00);
  EXPECT_EQ(float_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(float_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(float_to_f16(0x1p-14f), 0x0400);                // smallest normal
  EXPECT_EQ(float_to_f16(0x1p-24f), 0x0001);                // smallest subnormal
  EXPECT_EQ(float_to_f16(-0x1p-24f), 0x8001);
  EXPECT_EQ(float_to_f16(0x1p-25f), 0x0000);                // tie between 0 and 2^-24: even
  EXPECT_EQ(float_to_f16(0x1p-25f * 1.0000001f), 0x0001);   // just above that tie
  EXPECT_EQ(float_to_f16(3 * 0x1p-25f), 0x0002);            // 1.5 ulp ties up to even 2
  EXPECT_EQ(float_to_f16(5 * 0x1p-25f), 0x0002);            // 2.5 ulp ties down to even 2
  EXPECT_EQ(float_to_f16(1023.5f * 0x1p-24f), 0x0400);      // largest subnormal + half: normal
  EXPECT_EQ(float_to_f16(0.0f), 0x0000);
  EXPECT_EQ(float_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_f16(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_TRUE(f16_is_nan(float_to_f16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(f16_is_nan(float_to_f16(-std::numeric_limits<float>::quiet_NaN())));
  // Payload only in bits that do not survive narrowing: must still be a NaN, not infinity.
  EXPECT_TRUE(f16_is_nan(float_to_f16(std::bit_cast<float>(0x7f800001u))));
  EXPECT_TRUE(f16_is_nan(float_to_f16(std::bit_cast<float>(0xff800001u))));

  EXPECT_EQ(f16_to_float(0x0001), 0x1p-24f);
  EXPECT_EQ(f16_to_float(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(f16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(f16_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(std::bit_cast<std::uint32_t>(f16_to_float(0x8000)), 0x80000000u);
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7c01)));
  EXPECT_TRUE(std::isnan(f16_to_float(0xfc01)));
}

TEST(Half, F16AllBitPatternsRoundTrip) {
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float f = f16_to_float(h);
    if (f16_is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
      ASSERT_TRUE(f16_is_nan(float_to_f16(f))) << std::hex << i;
      continue;
    }
    ASSERT_EQ(static_cast<double>(f), f16_reference_value(h)) << std::hex << i;
    ASSERT_EQ(float_to_f16(f), h) << std::hex << i;
  }
}

// The kernels may convert with F16C instead of the scalar code; max(x, x) == x pushes every
// pattern through the kernel's widen and narrow steps.
TEST(Half, F16AllBitPatternsThroughKernel) {
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i <= 0xffff; ++i) all[i] = static_cast<std::uint16_t>(i);
  std::vector<std::uint16_t> out(all.size());
  reduce(out.data(), all.data(), all.data(), all.size(), DataType::f16, ReduceOp::max);
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    if (f16_is_nan(all[i])) {
      ASSERT_TRUE(f16_is_nan(out[i])) << std::hex << i;
    } else {
      ASSERT_EQ(out[i], all[i]) << std::hex << i;
    }
  }
}

TEST(Half, F16NarrowingMatchesIndependentRounding) {
  std::mt19937_64 rng(42);
  std::vector<float> values;
  // Random bit patterns covering the f16 range, its subnormals and just past both ends.
  std::uniform_int_distribution<std::uint32_t> exponent(100, 145);
  for (int i = 0; i < 2'000'000; ++i) {
    const auto bits = static_cast<std::uint32_t>(rng());
    values.push_back(std::bit_cast<float>((bits & 0x807fffffu) | (exponent(rng) << 23)));
  }
  // Exact ties and their neighbours around every f16 value.
  for (std::uint32_t h = 0; h < 0x7c00; ++h) {
    const float lo = f16_to_float(static_cast<std::uint16_t>(h));
    const float hi = h + 1 < 0x7c00 ? f16_to_float(static_cast<std::uint16_t>(h + 1)) : 65536.0f;
    const float mid = (lo + hi) / 2;  // exact: the f16 grid is much coarser than float's
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
      values.push_back(v);
      values.push_back(-v);
    }
  }
  for (float v : values) {
    const std::uint16_t h = float_to_f16(v);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(f16_to_float(h)),
              std::bit_cast<std::uint32_t>(f16_reference_round(v)))
        << "value " << v << " bits 0x" << std::hex << std::bit_cast<std::uint32_t>(v);
  }
  // The kernels' own narrowing (F16C where available) is checked against this scalar code by
  // ReduceKernelTest, whose f16 sums and products land on many rounding ties.
}

// --- bf16 --------------------------------------------------------------------------------

TEST(Half, Bf16RoundingEdgeCases) {
  auto from_bits = [](std::uint32_t b) { return std::bit_cast<float>(b); };
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808000u)), 0x3f80);  // tie, kept bit even: down
  EXPECT_EQ(float_to_bf16(from_bits(0x3f818000u)), 0x3f82);  // tie, kept bit odd: up
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808001u)), 0x3f81);  // above the tie
  EXPECT_EQ(float_to_bf16(from_bits(0x3f807fffu)), 0x3f80);  // below the tie
  EXPECT_EQ(float_to_bf16(from_bits(0xbf818000u)), 0xbf82);  // negative tie
  EXPECT_EQ(float_to_bf16(from_bits(0x3fffffffu)), 0x4000);  // carry into the exponent
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(float_to_bf16(-std::numeric_limits<float>::max()), 0xff80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(float_to_bf16(from_bits(0x00018000u)), 0x0002);  // subnormal tie to even
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(from_bits(0x7f800001u))));  // low-payload sNaN
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(from_bits(0xff800001u))));
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(from_bits(0x7fffffffu))));  // must not wrap to +0
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(from_bits(0xffffffffu))));
  // NaN results are quiet.
  EXPECT_NE(float_to_bf16(from_bits(0x7f800001u)) & 0x40u, 0u);

  EXPECT_EQ(bf16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bf16_to_float(0xc040), -3.0f);
  EXPECT_EQ(bf16_to_float(0x7f80), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7fc0)));
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7f81)));
}

TEST(Half, Bf16AllBitPatternsRoundTrip) {
  for (std::uint32_t i = 0; i <= 0xffff; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float f = bf16_to_float(h);
    if (bf16_is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << i;
      ASSERT_TRUE(bf16_is_nan(float_to_bf16(f))) << std::hex << i;
    } else {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(f), i << 16) << std::hex << i;
      ASSERT_EQ(float_to_bf16(f), h) << std::hex << i;
    }
  }
}

TEST(Half, Bf16AllBitPatternsThroughKernel) {
  // max(x, x) = x through the kernel's widen/narrow (the AVX2 path where the CPU has it):
  // every non-NaN pattern comes back unchanged, every NaN stays a NaN.
  std::vector<std::uint16_t> all(65536);
  for (std::uint32_t i = 0; i <= 0xffff; ++i) all[i] = static_cast<std::uint16_t>(i);
  for (const auto op : {ReduceOp::max, ReduceOp::min}) {
    std::vector<std::uint16_t> out(all.size());
    reduce(out.data(), all.data(), all.data(), all.size(), DataType::bf16, op);
    for (std::uint32_t i = 0; i <= 0xffff; ++i) {
      if (bf16_is_nan(all[i])) {
        ASSERT_TRUE(bf16_is_nan(out[i])) << std::hex << i;
      } else {
        ASSERT_EQ(out[i], all[i]) << std::hex << i;
      }
    }
  }
}

TEST(Half, HalfKernelsRoundTheFloatResultOnce) {
  // 1 + 2^-11 (f16) and 1 + 2^-8 (bf16) are ties after the float sum; both round to even 1.0.
  std::vector<std::uint16_t> one = {0x3c00};
  std::vector<std::uint16_t> tiny = {float_to_f16(0x1p-11f)};
  reduce_into(one.data(), tiny.data(), 1, DataType::f16, ReduceOp::sum);
  EXPECT_EQ(one[0], 0x3c00);

  std::vector<std::uint16_t> bone = {0x3f80};
  std::vector<std::uint16_t> btiny = {float_to_bf16(0x1p-8f)};
  reduce_into(bone.data(), btiny.data(), 1, DataType::bf16, ReduceOp::sum);
  EXPECT_EQ(bone[0], 0x3f80);

  // 65504 + 16 = 65520 overflows f16 to infinity.
  std::vector<std::uint16_t> big = {0x7bff};
  std::vector<std::uint16_t> sixteen = {float_to_f16(16.0f)};
  reduce_into(big.data(), sixteen.data(), 1, DataType::f16, ReduceOp::sum);
  EXPECT_EQ(big[0], 0x7c00);
}

// --- divide ------------------------------------------------------------------------------

template <class T>
std::vector<T> divided(std::vector<T> v, DataType type, std::size_t divisor) {
  divide(v.data(), v.size(), type, divisor);
  return v;
}

TEST(Divide, IntegersTruncateTowardZero) {
  using I32 = std::int32_t;
  constexpr I32 kMin32 = std::numeric_limits<I32>::min();
  EXPECT_EQ(divided<I32>({-7, 7, -1, 1, 0, kMin32}, DataType::i32, 2),
            (std::vector<I32>{-3, 3, 0, 0, 0, kMin32 / 2}));
  using I8 = std::int8_t;
  EXPECT_EQ(divided<I8>({-128, 127, -5, 5}, DataType::i8, 3), (std::vector<I8>{-42, 42, -1, 1}));
  // Divisors beyond the element range.
  EXPECT_EQ(divided<I8>({-128, 127, -127}, DataType::i8, 128), (std::vector<I8>{-1, 0, 0}));
  EXPECT_EQ(divided<I8>({-128, 127}, DataType::i8, 1000), (std::vector<I8>{0, 0}));
  using I16 = std::int16_t;
  EXPECT_EQ(divided<I16>({-32768, 32767, -7, 7}, DataType::i16, 2),
            (std::vector<I16>{-16384, 16383, -3, 3}));
  EXPECT_EQ(divided<I16>({-32768, 32767}, DataType::i16, 32768), (std::vector<I16>{-1, 0}));
  using U8 = std::uint8_t;
  EXPECT_EQ(divided<U8>({255, 7, 0}, DataType::u8, 2), (std::vector<U8>{127, 3, 0}));
  EXPECT_EQ(divided<U8>({255}, DataType::u8, 256), (std::vector<U8>{0}));
  using I64 = std::int64_t;
  constexpr I64 kMin64 = std::numeric_limits<I64>::min();
  EXPECT_EQ(divided<I64>({-9, 9, kMin64}, DataType::i64, 4),
            (std::vector<I64>{-2, 2, kMin64 / 4}));
  EXPECT_EQ(divided<I64>({kMin64, std::numeric_limits<I64>::max()}, DataType::i64,
                         std::size_t{1} << 63),
            (std::vector<I64>{-1, 0}));
  // Odd count exercises any vector tail.
  std::vector<I32> many(1001);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<I32>(i) - 500;
  const auto result = divided(many, DataType::i32, 7);
  for (std::size_t i = 0; i < many.size(); ++i) ASSERT_EQ(result[i], many[i] / 7);
}

TEST(Divide, BoolAverageIsRefusedEvenInAWorldOfOne) {
  std::vector<std::uint8_t> flags{1, 0, 1};
  for (const std::size_t divisor : {std::size_t{1}, std::size_t{3}}) {
    try {
      divide(flags.data(), flags.size(), DataType::boolean, divisor);
      FAIL() << "expected an Error for divisor " << divisor;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("avg of bool is not defined"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(flags, (std::vector<std::uint8_t>{1, 0, 1})) << "left untouched";
}

TEST(Divide, FloatsDivideAndRoundOnce) {
  EXPECT_EQ(divided<float>({1.0f, -3.0f, 7.0f}, DataType::f32, 2),
            (std::vector<float>{0.5f, -1.5f, 3.5f}));
  EXPECT_EQ(divided<double>({1.0, 10.0}, DataType::f64, 3),
            (std::vector<double>{1.0 / 3.0, 10.0 / 3.0}));
  EXPECT_EQ(divided<float>({1.0f}, DataType::f32, 3), (std::vector<float>{1.0f / 3.0f}));

  std::vector<std::uint16_t> h = {float_to_f16(1.0f), float_to_f16(-7.0f), 0x0001, 0x7c00};
  divide(h.data(), h.size(), DataType::f16, 3);
  EXPECT_EQ(h[0], float_to_f16(1.0f / 3.0f));
  EXPECT_EQ(h[1], float_to_f16(-7.0f / 3.0f));
  EXPECT_EQ(h[2], 0x0000);  // 2^-24 / 3 rounds to zero
  EXPECT_EQ(h[3], 0x7c00);  // inf stays inf

  std::vector<std::uint16_t> b = {float_to_bf16(1.0f), float_to_bf16(-7.0f)};
  divide(b.data(), b.size(), DataType::bf16, 3);
  EXPECT_EQ(b[0], float_to_bf16(1.0f / 3.0f));
  EXPECT_EQ(b[1], float_to_bf16(-7.0f / 3.0f));

  // Long f16/bf16 buffers (several chunks plus a tail) against the scalar definition.
  for (DataType type : {DataType::f16, DataType::bf16}) {
    std::mt19937_64 rng(7);
    const Bytes input = random_buffer(type, 10007, rng);
    Bytes buf = input;
    divide(buf.data(), 10007, type, 5);
    for (std::size_t i = 0; i < 10007; ++i) {
      const auto x = load<std::uint16_t>(input.data() + 2 * i);
      const auto expected = type == DataType::f16 ? float_to_f16(f16_to_float(x) / 5.0f)
                                                  : float_to_bf16(bf16_to_float(x) / 5.0f);
      ASSERT_EQ(load<std::uint16_t>(buf.data() + 2 * i), expected) << to_string(type) << " " << i;
    }
  }
}

TEST(Divide, AvgIsSumThenDivide) {
  std::vector<std::int32_t> a = {10, -10, 7};
  std::vector<std::int32_t> b = {5, -5, 0};
  reduce_into(a.data(), b.data(), a.size(), DataType::i32, ReduceOp::avg);
  divide(a.data(), a.size(), DataType::i32, 2);
  EXPECT_EQ(a, (std::vector<std::int32_t>{7, -7, 3}));
}

TEST(Divide, ByZeroThrowsInvalidArgument) {
  for (DataType type : kAllDataTypes) {
    std::vector<std::uint8_t> buf(16, 1);
    try {
      divide(buf.data(), 2, type, 0);
      FAIL() << "expected an Error for " << to_string(type);
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    }
    EXPECT_THROW(divide(nullptr, 0, type, 0), Error);
    if (type == DataType::boolean) {
      EXPECT_THROW(divide(nullptr, 0, type, 3), Error) << "avg of bool: refused at any count";
    } else {
      EXPECT_NO_THROW(divide(nullptr, 0, type, 3));
    }
  }
}

}  // namespace
}  // namespace ringfuse::reduce
