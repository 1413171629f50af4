// Our element types and operators as NCCL's (for the NCCL backend and ringfuse-perf's NCCL peer).
#pragma once

#include <nccl.h>

#include "core/combine.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse::nccl {

/// NCCL's type for moving (not reducing) elements of `type`. NCCL has no 16-bit integer: i16
/// moves as ncclFloat16, the same width, whose bits NCCL copies unchanged when it only moves
/// them; it must never be reduced as such (see can_reduce). bool moves as ncclUint8.
inline ncclDataType_t data_type(DataType type) {
  switch (type) {
    case DataType::i16: return ncclFloat16;
    case DataType::boolean: return ncclUint8;
    case DataType::f16: return ncclFloat16;
    case DataType::bf16: return ncclBfloat16;
    case DataType::f32: return ncclFloat32;
    case DataType::f64: return ncclFloat64;
    case DataType::i8: return ncclInt8;
    case DataType::u8: return ncclUint8;
    case DataType::i32: return ncclInt32;
    case DataType::i64: return ncclInt64;
  }
  return ncclUint8;
}

/// Whether NCCL reduces `type` under `op` correctly with data_type(type) and
/// reduce_op(op, type): all but i16 (NCCL has no 16-bit integer) and the bitwise operators
/// (NCCL has none). A Context stages those reductions on device memory through the host
/// backend instead (backend/cuda_staging_backend.hpp).
inline bool can_reduce(DataType type, ReduceOp op) {
  return type != DataType::i16 && !is_bitwise(op);
}

/// NCCL's operator for `op` on `type`. bool travels as ncclUint8, where max is logical or and
/// min logical and (a nonzero byte is true), so the logical ands (core::is_logical_and: min,
/// prod) map to ncclMin and the ors (sum, max) to ncclMax; from 0/1 inputs (torch's bools) the
/// results are 0 or 1, as on the host. The average of bools is not defined
/// (ringfuse::is_defined); callers refuse it first.
inline ncclRedOp_t reduce_op(ReduceOp op, DataType type) {
  if (type == DataType::boolean) return core::is_logical_and(op) ? ncclMin : ncclMax;
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;  // NCCL >= 2.10
    case ReduceOp::min: return ncclMin;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::prod: return ncclProd;
    case ReduceOp::band:
    case ReduceOp::bor:
    case ReduceOp::bxor: break;  // NCCL has none: can_reduce() is false
  }
  return ncclSum;
}

}  // namespace ringfuse::nccl
