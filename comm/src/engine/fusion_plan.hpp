// Groups the collectives released in one cycle: compatible all-reduces (same dtype, operator,
// scaling, compression and device) are packed together up to the fusion threshold, looking
// ahead a bounded number of entries past incompatible ones (mixed dtypes). An uncompressed
// all-reduce of at least `inplace_min` bytes is never copied through the fusion buffer: it
// joins a group only where the group runs in place over its members (`takes_pieces`), and
// otherwise runs alone, in place. Allgathers of one dtype and device are packed together the
// same way (one allgatherv), up to the threshold in gathered bytes, and so are (even)
// reducescatters of one dtype, operator and device (one reducescatter), up to the threshold
// in input bytes; everything else runs alone.
// Every rank computes the same plan from the same response.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "engine/messages.hpp"

namespace ringfuse::engine {

struct FusionGroup {
  std::vector<std::size_t> members;  // indices into the response's ready list, in order
  /// One collective for several tensors (or a compressed one): through the fusion buffer,
  /// or, with `in_place`, over the members where they lie.
  bool fused = false;
  /// A fused all-reduce run over the members' own memory, with no fusion buffer: what
  /// `takes_pieces` said for the group's element count.
  bool in_place = false;
};

/// Whether a fused all-reduce of `count` elements like `head` (its dtype, device, compression)
/// runs in place over its members' memory, with no fusion buffer. Every rank must answer alike:
/// only the fingerprint, the count and settings every rank shares may decide.
using TakesPieces = std::function<bool(const Fingerprint& head, std::size_t count)>;

/// The type all-reduced on the wire for `fp` (compression applies to f32/f64 only).
DataType wire_type(const Fingerprint& fp);

/// `takes_pieces` empty: no group runs in place, and large tensors always run alone.
std::vector<FusionGroup> plan_fusion(const std::vector<ReadyEntry>& ready, std::size_t threshold,
                                     std::size_t inplace_min, std::size_t lookahead,
                                     const TakesPieces& takes_pieces = {});

}  // namespace ringfuse::engine
