// Our element types and operators as NCCL's (for the NCCL backend and ringfuse-perf's NCCL peer).
#pragma once

#include <nccl.h>

#include "ringfuse/types.hpp"

namespace ringfuse::nccl {

inline ncclDataType_t data_type(DataType type) {
  switch (type) {
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

inline ncclRedOp_t reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;  // NCCL >= 2.10
    case ReduceOp::min: return ncclMin;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::prod: return ncclProd;
  }
  return ncclSum;
}

}  // namespace ringfuse::nccl
