// Element types and reduction operators understood by every collective.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ringfuse {

/// `boolean` is one byte, 0 false and anything else true (C++'s and torch's bool); reductions
/// write 0 or 1. New types are appended: the values travel in engine messages.
enum class DataType : std::uint8_t { f16, bf16, f32, f64, i8, u8, i32, i64, i16, boolean };

/// band, bor and bxor are bitwise (and, or, exclusive or), as MPI_BAND and torch's
/// ReduceOp.BAND: on integer types and bools only. New operators are appended: the values
/// travel in engine messages.
enum class ReduceOp : std::uint8_t { sum, avg, min, max, prod, band, bor, bxor };

inline constexpr DataType kAllDataTypes[] = {
    DataType::f16, DataType::bf16, DataType::f32, DataType::f64,    DataType::i8,
    DataType::u8,  DataType::i16,  DataType::i32, DataType::i64, DataType::boolean};
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::sum,  ReduceOp::avg, ReduceOp::min,
                                             ReduceOp::max,  ReduceOp::prod, ReduceOp::band,
                                             ReduceOp::bor, ReduceOp::bxor};

/// Size of one element in bytes.
constexpr std::size_t element_size(DataType type) {
  switch (type) {
    case DataType::f16:
    case DataType::bf16:
    case DataType::i16: return 2;
    case DataType::f32:
    case DataType::i32: return 4;
    case DataType::f64:
    case DataType::i64: return 8;
    case DataType::i8:
    case DataType::u8:
    case DataType::boolean: return 1;
  }
  return 0;
}

constexpr bool is_floating_point(DataType type) {
  return type == DataType::f16 || type == DataType::bf16 || type == DataType::f32 ||
         type == DataType::f64;
}

constexpr bool is_bitwise(ReduceOp op) {
  return op == ReduceOp::band || op == ReduceOp::bor || op == ReduceOp::bxor;
}

/// Whether `op` is defined on `type`. Everything is, except the average of bools (a sum of
/// bools is their logical or, and dividing that has no meaning; Horovod and torch refuse it
/// too) and the bitwise operators on floating-point types (as in MPI and Gloo). On bools sum,
/// max and bor are logical or, min, prod and band logical and, bxor logical exclusive or.
constexpr bool is_defined(DataType type, ReduceOp op) {
  if (is_bitwise(op)) return !is_floating_point(type);
  return !(type == DataType::boolean && op == ReduceOp::avg);
}

/// Short lowercase names ("f32", "sum") as used in logs, errors and ringfuse-perf tables.
std::string_view to_string(DataType type);
std::string_view to_string(ReduceOp op);

/// Inverse of to_string; std::nullopt for an unknown name.
std::optional<DataType> parse_data_type(std::string_view name);
std::optional<ReduceOp> parse_reduce_op(std::string_view name);

}  // namespace ringfuse
