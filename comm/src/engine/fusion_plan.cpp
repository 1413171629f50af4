#include "engine/fusion_plan.hpp"

namespace ringfuse::engine {
namespace {

bool compatible(const Fingerprint& a, const Fingerprint& b) {
  return a.op_type == OpType::allreduce && b.op_type == OpType::allreduce && a.dtype == b.dtype &&
         a.op == b.op && a.prescale == b.prescale && a.postscale == b.postscale &&
         a.compression == b.compression && a.device == b.device;
}

bool gathers_together(const Fingerprint& a, const Fingerprint& b) {
  return a.op_type == OpType::allgather && b.op_type == OpType::allgather &&
         a.dtype == b.dtype && a.device == b.device;
}

bool scatters_together(const Fingerprint& a, const Fingerprint& b) {
  return a.op_type == OpType::reducescatter && b.op_type == OpType::reducescatter &&
         a.dtype == b.dtype && a.op == b.op && a.device == b.device;
}

// What an allgather brings together on every rank: every rank's rows.
std::size_t gathered_bytes(const ReadyEntry& entry) {
  if (entry.fp.op_type == OpType::reducescatter) return entry.fp.bytes();  // the input
  const auto& fp = entry.fp;
  std::size_t row = 1;
  for (std::size_t d = 1; d < fp.shape.size(); ++d) row *= static_cast<std::size_t>(fp.shape[d]);
  std::size_t rows = 0;
  for (const auto d0 : entry.dim0) rows += static_cast<std::size_t>(d0);
  return rows * row * element_size(fp.dtype);
}

}  // namespace

DataType wire_type(const Fingerprint& fp) {
  if (fp.dtype != DataType::f32 && fp.dtype != DataType::f64) return fp.dtype;
  switch (fp.compression) {
    case Compression::fp16: return DataType::f16;
    case Compression::bf16: return DataType::bf16;
    case Compression::none: break;
  }
  return fp.dtype;
}

std::vector<FusionGroup> plan_fusion(const std::vector<ReadyEntry>& ready, std::size_t threshold,
                                     std::size_t inplace_min, std::size_t lookahead,
                                     const TakesPieces& takes_pieces) {
  std::vector<FusionGroup> groups;
  std::vector<bool> taken(ready.size(), false);
  for (std::size_t i = 0; i < ready.size(); ++i) {
    if (taken[i] || ready[i].kind == ReadyEntry::Kind::error) continue;
    taken[i] = true;
    FusionGroup group{{i}, false, false};
    const auto& head = ready[i].fp;
    std::size_t bytes = 0;
    if (head.op_type == OpType::allreduce) {
      // Members are compatible with the head: the same dtype and compression, so the same
      // wire type (worked out once, not twice per member).
      const DataType wire = wire_type(head);
      const std::size_t wire_element = element_size(wire);
      const bool uncompressed = wire == head.dtype;
      std::size_t count = head.numel();
      bytes = count * wire_element;
      // Copying a large tensor into the fusion buffer and back costs more than the separate
      // call it saves, so it joins a group only where the group runs with no copy at all:
      // then a step of large tensors is a handful of collectives instead of one per tensor
      // (issue 18: each collective pays for descheduled ranks, four on two cores).
      // Compressed tensors must go through the buffer whatever their size.
      const auto large = [&](std::size_t size) { return uncompressed && size >= inplace_min; };
      const auto in_place_at = [&](std::size_t elements) {
        return uncompressed && takes_pieces && takes_pieces(head, elements);
      };
      bool holds_large = large(bytes);
      if (!holds_large || in_place_at(count)) {
        std::size_t skipped = 0;
        for (std::size_t j = i + 1; j < ready.size() && skipped <= lookahead; ++j) {
          if (taken[j] || ready[j].kind == ReadyEntry::Kind::error) continue;
          const auto& fp = ready[j].fp;
          if (!compatible(head, fp)) {
            ++skipped;
            continue;
          }
          const std::size_t fp_count = fp.numel();
          const std::size_t fp_bytes = fp_count * wire_element;
          const bool fp_large = large(fp_bytes);
          // Where pieces depend on the count (a world whose size is not a power of two), a
          // large tensor stays out of any group it would take off the in-place path.
          if ((fp_large || holds_large) && !in_place_at(count + fp_count)) {
            ++skipped;
            continue;
          }
          if (bytes + fp_bytes > threshold) break;
          bytes += fp_bytes;
          count += fp_count;
          holds_large = holds_large || fp_large;
          taken[j] = true;
          group.members.push_back(j);
        }
      }
      // One tensor without compression is reduced in place; the buffer is for packing.
      group.fused = group.members.size() > 1 || !uncompressed;
      if (group.fused && bytes > threshold) group.fused = false;  // too big: in place, alone
      group.in_place = group.fused && in_place_at(count);
    } else if (head.op_type == OpType::allgather || head.op_type == OpType::reducescatter) {
      const auto together = head.op_type == OpType::allgather ? gathers_together
                                                              : scatters_together;
      bytes = gathered_bytes(ready[i]);
      std::size_t skipped = 0;
      for (std::size_t j = i + 1; j < ready.size() && skipped <= lookahead; ++j) {
        if (taken[j] || ready[j].kind == ReadyEntry::Kind::error) continue;
        if (!together(head, ready[j].fp)) {
          ++skipped;
          continue;
        }
        const auto member_bytes = gathered_bytes(ready[j]);
        if (bytes + member_bytes > threshold) break;
        bytes += member_bytes;
        taken[j] = true;
        group.members.push_back(j);
      }
      group.fused = group.members.size() > 1;
    }
    groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace ringfuse::engine
