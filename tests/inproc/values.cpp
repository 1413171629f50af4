#include "values.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/combine.hpp"
#include "reduce/half.hpp"

namespace ringfuse::inproc {
namespace {

constexpr std::size_t kAlignment = 64;
constexpr std::size_t kGuardBytes = 64;
constexpr unsigned char kGuardByte = 0xA5;

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// `value`, a mathematically exact integer, as the integer dtype holds it (modulo 2^bits).
double wrap_integer(DataType type, std::int64_t value) {
  switch (type) {
    case DataType::i8: return static_cast<std::int8_t>(value);
    case DataType::u8: return static_cast<std::uint8_t>(value);
    case DataType::i16: return static_cast<std::int16_t>(value);
    case DataType::i32: return static_cast<std::int32_t>(value);
    default: return static_cast<double>(value);
  }
}

/// An exact sum divided once as the library's divide() does it for `type`.
double divide_like_the_dtype(DataType type, double sum, int size) {
  switch (type) {
    case DataType::f64: return sum / size;
    case DataType::f32: return static_cast<float>(sum) / static_cast<float>(size);
    case DataType::f16:
      return reduce::f16_to_float(
          reduce::float_to_f16(static_cast<float>(sum) / static_cast<float>(size)));
    case DataType::bf16:
      return reduce::bf16_to_float(
          reduce::float_to_bf16(static_cast<float>(sum) / static_cast<float>(size)));
    default:
      // Integer division in C++ truncates toward zero, as the library's does.
      return wrap_integer(type, static_cast<std::int64_t>(sum) / size);
  }
}

}  // namespace

double input(int rank, std::size_t index, DataType type, ReduceOp op, std::uint64_t seed) {
  const std::uint64_t h =
      mix(seed ^ mix(static_cast<std::uint64_t>(rank) * 0x100000001b3ull + index));
  if (type == DataType::boolean) {
    // Mostly false for or (sum, max, bor) and bxor, mostly true for and (min, prod, band), so
    // that with up to 8 ranks both results turn up often.
    const bool rare = h % 8 == 0;
    return core::is_logical_and(op) != rare ? 1.0 : 0.0;
  }
  const bool is_unsigned = type == DataType::u8;
  if (is_bitwise(op)) {
    // Eight-bit patterns, sign-extended for the signed types (their high bits take part too):
    // one bit cleared for band, one set for bor, any for bxor, so that with up to 8 ranks
    // every result keeps some bits and clears others.
    const std::uint64_t bit = std::uint64_t{1} << (h % 8);
    const std::uint64_t pattern = op == ReduceOp::band  ? 0xff & ~bit
                                  : op == ReduceOp::bor ? bit
                                                        : (h >> 8) & 0xff;
    return is_unsigned ? static_cast<double>(pattern)
                       : static_cast<double>(static_cast<std::int8_t>(pattern));
  }
  switch (op) {
    case ReduceOp::prod: {
      static constexpr double kSigned[] = {1, -1, 2};
      static constexpr double kUnsigned[] = {1, 2, 3};
      return (is_unsigned ? kUnsigned : kSigned)[h % 3];
    }
    case ReduceOp::min:
    case ReduceOp::max: {
      const double v = static_cast<double>(h % 17);
      return is_unsigned ? v : v - 8;
    }
    case ReduceOp::sum:
    case ReduceOp::avg:
    case ReduceOp::band:
    case ReduceOp::bor:
    case ReduceOp::bxor: break;
  }
  const double v = static_cast<double>(h % 9);
  return is_unsigned ? v : v - 4;
}

double reference(int size, std::size_t index, DataType type, ReduceOp op, std::uint64_t seed) {
  if (type == DataType::boolean) {
    // Logical and, or or exclusive or (core::combine_bools); avg is not defined (no reference).
    bool acc = core::is_logical_and(op);
    for (int r = 0; r < size; ++r) {
      const bool v = input(r, index, type, op, seed) != 0;
      acc = core::combine_bools(op, acc, v);
    }
    return acc ? 1.0 : 0.0;
  }
  // Every partial result is an integer of magnitude at most 3^8 (bitwise: an eight-bit
  // pattern), exact in a double and an int64; the dtype's rounding or wrap-around is applied
  // once at the end.
  std::int64_t acc = static_cast<std::int64_t>(input(0, index, type, op, seed));
  for (int r = 1; r < size; ++r) {
    acc =
        core::combine(op, acc, static_cast<std::int64_t>(input(r, index, type, op, seed)));
  }
  if (op == ReduceOp::avg) return divide_like_the_dtype(type, static_cast<double>(acc), size);
  return is_floating_point(type) ? static_cast<double>(acc) : wrap_integer(type, acc);
}

std::byte pattern(std::uint64_t a, std::uint64_t b, std::size_t index) {
  return static_cast<std::byte>(mix(mix(a * 0x100000001b3ull + b) ^ index) & 0xff);
}

void put(std::byte* base, std::size_t index, DataType type, double value) {
  std::byte* at = base + index * element_size(type);
  const auto write = [at](auto v) { std::memcpy(at, &v, sizeof(v)); };
  switch (type) {
    case DataType::f16: return write(reduce::float_to_f16(static_cast<float>(value)));
    case DataType::bf16: return write(reduce::float_to_bf16(static_cast<float>(value)));
    case DataType::f32: return write(static_cast<float>(value));
    case DataType::f64: return write(value);
    case DataType::i8: return write(static_cast<std::int8_t>(value));
    case DataType::u8: return write(static_cast<std::uint8_t>(value));
    case DataType::i32: return write(static_cast<std::int32_t>(value));
    case DataType::i64: return write(static_cast<std::int64_t>(value));
    case DataType::i16: return write(static_cast<std::int16_t>(value));
    case DataType::boolean: return write(static_cast<std::uint8_t>(value != 0 ? 1 : 0));
  }
}

double get(const std::byte* base, std::size_t index, DataType type) {
  const std::byte* at = base + index * element_size(type);
  const auto read = [at]<class T>(T) {
    T v;
    std::memcpy(&v, at, sizeof(v));
    return v;
  };
  switch (type) {
    case DataType::f16: return reduce::f16_to_float(read(std::uint16_t{}));
    case DataType::bf16: return reduce::bf16_to_float(read(std::uint16_t{}));
    case DataType::f32: return read(float{});
    case DataType::f64: return read(double{});
    case DataType::i8: return read(std::int8_t{});
    case DataType::u8: return read(std::uint8_t{});
    case DataType::i32: return read(std::int32_t{});
    case DataType::i64: return static_cast<double>(read(std::int64_t{}));
    case DataType::i16: return read(std::int16_t{});
    // The raw byte: a result must be exactly 0 or 1, so another nonzero byte shows as wrong.
    case DataType::boolean: return read(std::uint8_t{});
  }
  return 0;
}

std::string describe_difference(std::size_t index, double got, double want) {
  return fmt::format("index {}: got {}, want {}", index, got, want);
}

GuardedBuffer::GuardedBuffer(std::size_t bytes, std::size_t misalignment)
    : storage_(std::make_unique<std::byte[]>(bytes + misalignment + 2 * kGuardBytes + kAlignment)),
      bytes_(bytes),
      misalignment_(misalignment) {
  auto address = reinterpret_cast<std::uintptr_t>(storage_.get()) + kGuardBytes;
  address = (address + kAlignment - 1) / kAlignment * kAlignment;
  data_ = reinterpret_cast<std::byte*>(address) + misalignment;
  std::memset(data_ - misalignment - kGuardBytes, kGuardByte, misalignment + kGuardBytes);
  std::memset(data_ + bytes_, kGuardByte, kGuardBytes);
}

bool GuardedBuffer::guards_intact() const {
  const auto intact = [](const std::byte* from, std::size_t n) {
    return std::all_of(from, from + n,
                       [](std::byte b) { return b == static_cast<std::byte>(kGuardByte); });
  };
  return intact(data_ - misalignment_ - kGuardBytes, misalignment_ + kGuardBytes) &&
         intact(data_ + bytes_, kGuardBytes);
}

std::size_t misalignment(DataType type, bool aligned, int rank, std::size_t case_index) {
  if (aligned) return 0;
  const std::size_t elements = 1 + 2 * ((static_cast<std::size_t>(rank) + case_index) % 4);
  return elements * element_size(type);
}

std::string label(DataType type, std::size_t count, ReduceOp op) {
  return fmt::format("{}[{}] {}", to_string(type), count, to_string(op));
}

std::vector<std::size_t> odd_counts(int size, std::initializer_list<std::size_t> others) {
  std::vector<std::size_t> counts{0, 1, 2, static_cast<std::size_t>(size) + 1};
  if (size > 2) counts.push_back(static_cast<std::size_t>(size) - 1);
  counts.insert(counts.end(), others);
  std::sort(counts.begin(), counts.end());
  counts.erase(std::unique(counts.begin(), counts.end()), counts.end());
  return counts;
}

}  // namespace ringfuse::inproc
