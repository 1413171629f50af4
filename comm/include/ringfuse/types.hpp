// Element types and reduction operators understood by every collective.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ringfuse {

enum class DataType : std::uint8_t { f16, bf16, f32, f64, i8, u8, i32, i64 };

enum class ReduceOp : std::uint8_t { sum, avg, min, max, prod };

inline constexpr DataType kAllDataTypes[] = {DataType::f16, DataType::bf16, DataType::f32,
                                             DataType::f64, DataType::i8,   DataType::u8,
                                             DataType::i32, DataType::i64};
inline constexpr ReduceOp kAllReduceOps[] = {ReduceOp::sum, ReduceOp::avg, ReduceOp::min,
                                             ReduceOp::max, ReduceOp::prod};

/// Size of one element in bytes.
constexpr std::size_t element_size(DataType type) {
  switch (type) {
    case DataType::f16:
    case DataType::bf16: return 2;
    case DataType::f32:
    case DataType::i32: return 4;
    case DataType::f64:
    case DataType::i64: return 8;
    case DataType::i8:
    case DataType::u8: return 1;
  }
  return 0;
}

constexpr bool is_floating_point(DataType type) {
  return type == DataType::f16 || type == DataType::bf16 || type == DataType::f32 ||
         type == DataType::f64;
}

/// Short lowercase names ("f32", "sum") as used in logs, errors and ringfuse-perf tables.
std::string_view to_string(DataType type);
std::string_view to_string(ReduceOp op);

/// Inverse of to_string; std::nullopt for an unknown name.
std::optional<DataType> parse_data_type(std::string_view name);
std::optional<ReduceOp> parse_reduce_op(std::string_view name);

}  // namespace ringfuse
