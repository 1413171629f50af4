#include "engine/fusion_plan.hpp"

namespace ringfuse::engine {
namespace {

bool compatible(const Fingerprint& a, const Fingerprint& b) {
  return a.op_type == OpType::allreduce && b.op_type == OpType::allreduce && a.dtype == b.dtype &&
         a.op == b.op && a.prescale == b.prescale && a.postscale == b.postscale &&
         a.compression == b.compression && a.device == b.device;
}

std::size_t wire_bytes(const Fingerprint& fp) { return fp.numel() * element_size(wire_type(fp)); }

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

// Copying a large tensor into the fusion buffer and back costs more than the separate call it
// saves: it is reduced in place, alone. (Compressed tensors must go through the buffer.)
// `bytes` is wire_bytes(fp), which the caller needs too (a loop over the shape).
bool reduce_in_place(const Fingerprint& fp, std::size_t bytes, std::size_t inplace_min) {
  return fp.op_type == OpType::allreduce && wire_type(fp) == fp.dtype && bytes >= inplace_min;
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
                                     std::size_t inplace_min, std::size_t lookahead) {
  std::vector<FusionGroup> groups;
  std::vector<bool> taken(ready.size(), false);
  for (std::size_t i = 0; i < ready.size(); ++i) {
    if (taken[i] || ready[i].kind == ReadyEntry::Kind::error) continue;
    taken[i] = true;
    FusionGroup group{{i}, false};
    const auto& head = ready[i].fp;
    std::size_t bytes = head.op_type == OpType::allreduce ? wire_bytes(head) : 0;
    if (head.op_type == OpType::allreduce && !reduce_in_place(head, bytes, inplace_min)) {
      // Members are compatible with the head: the same dtype and compression, so the same
      // wire type (worked out once, not twice per member).
      const DataType wire = wire_type(head);
      const std::size_t wire_element = element_size(wire);
      const bool may_run_in_place = wire == head.dtype;
      std::size_t skipped = 0;
      for (std::size_t j = i + 1; j < ready.size() && skipped <= lookahead; ++j) {
        if (taken[j] || ready[j].kind == ReadyEntry::Kind::error) continue;
        const auto& fp = ready[j].fp;
        if (!compatible(head, fp)) {
          ++skipped;
          continue;
        }
        const auto fp_bytes = fp.numel() * wire_element;
        if (may_run_in_place && fp_bytes >= inplace_min) {  // reduce_in_place(fp, ...)
          ++skipped;
          continue;
        }
        if (bytes + fp_bytes > threshold) break;
        bytes += fp_bytes;
        taken[j] = true;
        group.members.push_back(j);
      }
      // One tensor without compression is reduced in place; the buffer is for packing.
      group.fused = group.members.size() > 1 || wire_type(head) != head.dtype;
      if (group.fused && bytes > threshold) group.fused = false;  // too big: in place, alone
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
