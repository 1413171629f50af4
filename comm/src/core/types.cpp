#include "ringfuse/types.hpp"

#include <array>
#include <utility>

#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse {
namespace {

constexpr std::array<std::pair<DataType, std::string_view>, 10> kTypeNames{{
    {DataType::f16, "f16"},
    {DataType::bf16, "bf16"},
    {DataType::f32, "f32"},
    {DataType::f64, "f64"},
    {DataType::i8, "i8"},
    {DataType::u8, "u8"},
    {DataType::i16, "i16"},
    {DataType::i32, "i32"},
    {DataType::i64, "i64"},
    {DataType::boolean, "bool"},
}};

constexpr std::array<std::pair<ReduceOp, std::string_view>, 8> kOpNames{{
    {ReduceOp::sum, "sum"},
    {ReduceOp::avg, "avg"},
    {ReduceOp::min, "min"},
    {ReduceOp::max, "max"},
    {ReduceOp::prod, "prod"},
    {ReduceOp::band, "band"},
    {ReduceOp::bor, "bor"},
    {ReduceOp::bxor, "bxor"},
}};

constexpr std::array<std::pair<Algorithm, std::string_view>, 4> kAlgorithmNames{{
    {Algorithm::automatic, "auto"},
    {Algorithm::ring, "ring"},
    {Algorithm::tree, "tree"},
    {Algorithm::rhd, "rhd"},
}};

template <typename Enum, std::size_t N>
std::string_view name_of(const std::array<std::pair<Enum, std::string_view>, N>& table,
                         Enum value) {
  for (const auto& [candidate, name] : table) {
    if (candidate == value) return name;
  }
  return "unknown";
}

template <typename Enum, std::size_t N>
std::optional<Enum> value_of(const std::array<std::pair<Enum, std::string_view>, N>& table,
                             std::string_view name) {
  for (const auto& [candidate, candidate_name] : table) {
    if (candidate_name == name) return candidate;
  }
  return std::nullopt;
}

}  // namespace

std::string_view to_string(DataType type) { return name_of(kTypeNames, type); }
std::string_view to_string(ReduceOp op) { return name_of(kOpNames, op); }
std::string_view to_string(Algorithm algo) { return name_of(kAlgorithmNames, algo); }

std::optional<DataType> parse_data_type(std::string_view name) {
  return value_of(kTypeNames, name);
}
std::optional<ReduceOp> parse_reduce_op(std::string_view name) {
  return value_of(kOpNames, name);
}

std::string_view to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::invalid_config: return "invalid configuration";
    case ErrorKind::timeout: return "timeout";
    case ErrorKind::peer_failure: return "peer failure";
    case ErrorKind::protocol: return "protocol error";
    case ErrorKind::system: return "system error";
  }
  return "error";
}

}  // namespace ringfuse
