// Typed element-wise reduction kernels used by every algorithm (host memory).
#pragma once

#include <cstddef>

#include "ringfuse/types.hpp"

namespace ringfuse::reduce {

/// dst[i] = op(dst[i], src[i]) for i in [0, count). ReduceOp::avg reduces as a sum; the caller
/// divides once at the end with divide(). Integer sum and prod wrap modulo 2^bits (no UB).
/// f16/bf16 are computed in float and rounded to nearest-even once per element.
/// dst and src may not overlap partially (identical pointers are allowed).
void reduce_into(void* dst, const void* src, std::size_t count, DataType type, ReduceOp op);

/// out[i] = op(a[i], b[i]); out may alias a or b.
void reduce(void* out, const void* a, const void* b, std::size_t count, DataType type,
            ReduceOp op);

/// buf[i] /= divisor (floats: rounded once; integers: truncated toward zero), for ReduceOp::avg.
void divide(void* buf, std::size_t count, DataType type, std::size_t divisor);

}  // namespace ringfuse::reduce
