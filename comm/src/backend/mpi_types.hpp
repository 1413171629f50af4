// Ringfuse's element types and reduction operators as Open MPI names them: for the MPI backend
// and for ringfuse-perf's MPI peer, so that both reduce what they compare alike. MPI has no
// 16-bit floating type; the backend reduces f16 and bf16 with operators of its own.
#pragma once

#include <mpi.h>

#include "core/combine.hpp"
#include "ringfuse/types.hpp"

namespace ringfuse::backend::mpi {

/// MPI's datatype for `type`. f16 and bf16 are MPI_UINT16_T: bits that only travel.
inline MPI_Datatype datatype(DataType type) {
  switch (type) {
    case DataType::f16:
    case DataType::bf16: return MPI_UINT16_T;
    case DataType::f32: return MPI_FLOAT;
    case DataType::f64: return MPI_DOUBLE;
    case DataType::i8: return MPI_INT8_T;
    case DataType::u8: return MPI_UINT8_T;
    case DataType::i32: return MPI_INT32_T;
    case DataType::i64: return MPI_INT64_T;
    case DataType::i16: return MPI_INT16_T;
    case DataType::boolean: return MPI_C_BOOL;  // one byte, as our bool
  }
  return MPI_BYTE;
}

/// MPI's built-in operator for `op` on `type` (not f16 or bf16). avg is MPI_SUM: the caller
/// divides. MPI defines only the logical operators on MPI_C_BOOL.
inline MPI_Op reduce_op(DataType type, ReduceOp op) {
  if (type == DataType::boolean) {
    if (op == ReduceOp::bxor) return MPI_LXOR;
    return core::is_logical_and(op) ? MPI_LAND : MPI_LOR;
  }
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return MPI_SUM;
    case ReduceOp::min: return MPI_MIN;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::prod: return MPI_PROD;
    case ReduceOp::band: return MPI_BAND;
    case ReduceOp::bor: return MPI_BOR;
    case ReduceOp::bxor: return MPI_BXOR;
  }
  return MPI_SUM;
}

}  // namespace ringfuse::backend::mpi
