// Groups the collectives released in one cycle: compatible all-reduces (same dtype, operator,
// scaling, compression and device) are packed together up to the fusion threshold, looking
// ahead a bounded number of entries past incompatible ones (mixed dtypes); uncompressed
// all-reduces of at least `inplace_min` bytes run alone, in place. Allgathers of one dtype and
// device are packed together the same way (one allgatherv), up to the threshold in gathered
// bytes, and so are (even) reducescatters of one dtype, operator and device (one
// reducescatter), up to the threshold in input bytes; everything else runs alone.
// Every rank computes the same plan from the same response.
#pragma once

#include <cstddef>
#include <vector>

#include "engine/messages.hpp"

namespace ringfuse::engine {

struct FusionGroup {
  std::vector<std::size_t> members;  // indices into the response's ready list, in order
  bool fused = false;                // goes through the fusion buffer
};

/// The type all-reduced on the wire for `fp` (compression applies to f32/f64 only).
DataType wire_type(const Fingerprint& fp);

std::vector<FusionGroup> plan_fusion(const std::vector<ReadyEntry>& ready, std::size_t threshold,
                                     std::size_t inplace_min, std::size_t lookahead);

}  // namespace ringfuse::engine
