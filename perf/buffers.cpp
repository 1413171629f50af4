#include "buffers.hpp"

#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/combine.hpp"
#include "reduce/half.hpp"

namespace ringfuse::perf {
namespace {

constexpr std::size_t kAlignment = 4096;

// f16 and bf16 are stored as their bit patterns; Tag carries both storage type and DataType.
template <DataType D, class Storage>
struct Tag {
  static constexpr DataType type = D;
  using storage = Storage;
};

template <class F>
decltype(auto) dispatch(DataType type, F&& f) {
  switch (type) {
    case DataType::f16: return f(Tag<DataType::f16, std::uint16_t>{});
    case DataType::bf16: return f(Tag<DataType::bf16, std::uint16_t>{});
    case DataType::f32: return f(Tag<DataType::f32, float>{});
    case DataType::f64: return f(Tag<DataType::f64, double>{});
    case DataType::i8: return f(Tag<DataType::i8, std::int8_t>{});
    case DataType::u8: return f(Tag<DataType::u8, std::uint8_t>{});
    case DataType::i32: return f(Tag<DataType::i32, std::int32_t>{});
    case DataType::i64: return f(Tag<DataType::i64, std::int64_t>{});
    case DataType::i16: return f(Tag<DataType::i16, std::int16_t>{});
    case DataType::boolean: return f(Tag<DataType::boolean, std::uint8_t>{});
  }
  return f(Tag<DataType::f32, float>{});
}

template <DataType D, class S>
S encode(double v) {
  if constexpr (D == DataType::f16) {
    return reduce::float_to_f16(static_cast<float>(v));
  } else if constexpr (D == DataType::bf16) {
    return reduce::float_to_bf16(static_cast<float>(v));
  } else if constexpr (D == DataType::boolean) {
    return static_cast<S>(v != 0);
  } else if constexpr (std::is_floating_point_v<S>) {
    return static_cast<S>(v);
  } else {
    // Through int64 then a narrowing conversion: modular in C++20, which is exactly how the
    // library's integer sum and prod wrap.
    return static_cast<S>(static_cast<std::int64_t>(v));
  }
}

template <DataType D, class S>
double decode(S s) {
  if constexpr (D == DataType::f16) {
    return reduce::f16_to_float(s);
  } else if constexpr (D == DataType::bf16) {
    return reduce::bf16_to_float(s);
  } else {
    return static_cast<double>(s);
  }
}

// Inputs are small integers, so sums are exact in every type, and products stay powers of two
// (exact in f16/bf16; wrapping in i8/u8 like the library's). Both patterns have period 10 in
// the index, so the reference is a 10-entry table per source rank.
constexpr std::size_t kPeriod = 10;

double input_value(ReduceOp op, int rank, std::size_t index, DataType type) {
  const std::size_t phase = (static_cast<std::size_t>(rank) + 3 * index) % 5;
  if (type == DataType::boolean) {
    // True on about one rank in five for or (sum, max, bor) and exclusive or, false on one in
    // five for and (min, prod, band): both results turn up at any world size.
    return core::is_logical_and(op) != (phase == 0) ? 1.0 : 0.0;
  }
  if (is_bitwise(op)) {
    // Seven-bit patterns (they fit i8), one all ones, so that and, or and exclusive or each
    // keep some bits and clear others.
    static constexpr double kBits[] = {0x7f, 0x5b, 0x6e, 0x3d, 0x77};
    return kBits[phase];
  }
  if (op == ReduceOp::prod) return 1.0 + static_cast<double>((rank + index) % 2);
  return 1.0 + static_cast<double>(phase);
}

template <DataType D, class S>
S reduced_value(const CaseSpec& spec, std::size_t index) {
  if constexpr (D == DataType::boolean) {
    // sum, max and bor are logical or, min, prod and band logical and, bxor logical
    // exclusive or (avg is refused).
    bool acc = encode<D, S>(input_value(spec.op, 0, index, D)) != 0;
    for (int q = 1; q < spec.size; ++q) {
      const bool v = encode<D, S>(input_value(spec.op, q, index, D)) != 0;
      acc = core::combine_bools(spec.op, acc, v);
    }
    return static_cast<S>(acc);
  }
  double acc = input_value(spec.op, 0, index, D);
  for (int q = 1; q < spec.size; ++q) {
    acc = core::combine(spec.op, acc, input_value(spec.op, q, index, D));
  }
  if (spec.op == ReduceOp::avg) {
    if constexpr (std::is_integral_v<S> && D != DataType::f16 && D != DataType::bf16) {
      acc = std::trunc(acc / spec.size);
    } else {
      acc /= spec.size;
    }
  }
  return encode<D, S>(acc);
}

template <DataType D>
constexpr double tolerance() {
  switch (D) {
    case DataType::f16: return 1e-2;
    case DataType::bf16: return 2e-2;
    case DataType::f32: return 1e-5;
    case DataType::f64: return 1e-12;
    default: return 0.0;
  }
}

template <DataType D, class S>
bool matches(S got, S want) {
  if constexpr (tolerance<D>() == 0.0) {
    return got == want;
  } else {
    const double g = decode<D, S>(got);
    const double w = decode<D, S>(want);
    return std::abs(g - w) <= tolerance<D>() * std::max(1.0, std::abs(w));
  }
}

}  // namespace

void AlignedBytes::Free::operator()(std::byte* p) const { std::free(p); }

AlignedBytes::AlignedBytes(std::size_t bytes) : size_(bytes) {
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  auto* p = static_cast<std::byte*>(std::aligned_alloc(kAlignment, rounded));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  data_.reset(p);
}

Buffers::Buffers(const CaseSpec& spec)
    : spec_(spec),
      input_(spec.layout.input_count * element_size(spec.type)),
      output_(spec.layout.output_count * element_size(spec.type)) {
  dispatch(spec_.type, [&]<class T>(T) {
    using S = typename T::storage;
    std::array<S, kPeriod> pattern{};
    for (std::size_t k = 0; k < kPeriod; ++k) {
      pattern[k] = encode<T::type, S>(input_value(spec_.op, spec_.rank, k, T::type));
    }
    // reducescatter and alltoall inputs are indexed globally; allgather's input is this rank's
    // block, which lands at the same offsets in every output block.
    auto* in = reinterpret_cast<S*>(input_.data());
    for (std::size_t i = 0; i < spec_.layout.input_count; ++i) in[i] = pattern[i % kPeriod];
  });
  if (on_device()) {
    device_input_ = DeviceBytes(input_.size());
    device_output_ = DeviceBytes(output_.size());
    device_input_.upload(input_.data(), input_.size());
  }
  restore();
}

void Buffers::restore() {
  if (!spec_.layout.in_place) return;
  if (on_device()) {
    device_output_.copy_from(device_input_, input_.size());
  } else {
    std::memcpy(output_.data(), input_.data(), input_.size());
  }
}

void Buffers::poison() {
  if (on_device()) {
    device_output_.fill(0xA5, output_.size());
  } else {
    std::memset(output_.data(), 0xA5, output_.size());
  }
  restore();
}

std::uint64_t Buffers::count_wrong() {
  if (on_device()) device_output_.download(output_.data(), output_.size());
  return dispatch(spec_.type, [&]<class T>(T) -> std::uint64_t {
    using S = typename T::storage;
    constexpr DataType D = T::type;
    const auto* out = reinterpret_cast<const S*>(output_.data());
    const std::size_t n = spec_.layout.output_count;
    const std::size_t block = spec_.layout.block;
    std::uint64_t wrong = 0;
    // expected[src][k]: rank src's input at an index ≡ k (mod kPeriod); reduced[k]: the reduction.
    std::array<S, kPeriod> reduced{};
    for (std::size_t k = 0; k < kPeriod; ++k) reduced[k] = reduced_value<D, S>(spec_, k);
    auto from = [&](int src, std::size_t index) {
      return encode<D, S>(input_value(spec_.op, src, index % kPeriod, D));
    };
    switch (spec_.collective) {
      case Collective::barrier: break;
      case Collective::allreduce:
        for (std::size_t i = 0; i < n; ++i) wrong += !matches<D, S>(out[i], reduced[i % kPeriod]);
        break;
      case Collective::reducescatter: {
        const std::size_t base = static_cast<std::size_t>(spec_.rank) * block;
        for (std::size_t i = 0; i < n; ++i) {
          wrong += !matches<D, S>(out[i], reduced[(base + i) % kPeriod]);
        }
        break;
      }
      case Collective::broadcast: {
        std::array<S, kPeriod> want{};
        for (std::size_t k = 0; k < kPeriod; ++k) want[k] = from(spec_.root, k);
        for (std::size_t i = 0; i < n; ++i) wrong += !matches<D, S>(out[i], want[i % kPeriod]);
        break;
      }
      case Collective::allgather:
      case Collective::alltoall:
        for (int src = 0; src < spec_.size; ++src) {
          std::array<S, kPeriod> want{};
          // allgather: block src holds src's input[k]; alltoall: block src holds src's
          // input[rank * block + k].
          const std::size_t offset =
              spec_.collective == Collective::alltoall ? static_cast<std::size_t>(spec_.rank) * block : 0;
          for (std::size_t k = 0; k < kPeriod; ++k) want[k] = from(src, (offset + k) % kPeriod);
          const S* b = out + static_cast<std::size_t>(src) * block;
          for (std::size_t k = 0; k < block; ++k) wrong += !matches<D, S>(b[k], want[k % kPeriod]);
        }
        break;
    }
    return wrong;
  });
}

}  // namespace ringfuse::perf
