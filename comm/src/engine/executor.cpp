#include "engine/executor.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>

#include <fmt/format.h>

#include "backend/nccl_backend.hpp"
#include "core/errors.hpp"
#include "memory/fusion_buffer.hpp"

namespace ringfuse::engine {
namespace {

// Whether two non-empty pieces share a byte: the same tensor enqueued twice in one group.
// Reduced in place it would be reduced twice; through the fusion buffer each member is
// reduced once, as before. `runs` is scratch. Linear when the tensors come in address order
// or its reverse (one arena, enqueued forward or in backward order), a sort otherwise.
bool any_overlap(std::span<const transport::Piece> pieces,
                 std::vector<std::pair<std::uintptr_t, std::uintptr_t>>& runs) {
  runs.clear();
  for (const auto& piece : pieces) {
    // As integers: `<` between pointers into different tensors is not defined.
    const auto at = reinterpret_cast<std::uintptr_t>(piece.data);
    if (piece.bytes > 0) runs.emplace_back(at, at + piece.bytes);
  }
  if (std::is_sorted(runs.begin(), runs.end(), std::greater<>())) {
    std::reverse(runs.begin(), runs.end());
  } else if (!std::is_sorted(runs.begin(), runs.end())) {
    std::sort(runs.begin(), runs.end());
  }
  for (std::size_t i = 1; i < runs.size(); ++i) {
    if (runs[i].first < runs[i - 1].second) return true;
  }
  return false;
}

}  // namespace

Executor::Executor(int rank, int size, std::size_t fusion_threshold,
                   ExecutionResources resources, Outstanding& outstanding,
                   TimelineTrack& timeline)
    : rank_(rank),
      reported_rank_(resources.reported_rank >= 0 ? resources.reported_rank : rank),
      size_(size),
      data_(std::move(resources.data)),
      device_space_(std::move(resources.device_space)),
      device_data_(std::move(resources.device_data)),
      device_unavailable_(std::move(resources.device_unavailable)),
      progress_(resources.progress),
      outstanding_(outstanding),
      timeline_(timeline),
      host_memory_(fusion_threshold, data_->shared_window()) {}

std::optional<std::string> Executor::device_problem(const TensorView& tensor) const {
  if (tensor.device != Device::cuda) return std::nullopt;
  if (!device_space_ || !device_data_) {
    return fmt::format("is a CUDA tensor, but {}; pass host memory, or run where a CUDA device "
                       "is visible",
                       device_unavailable_);
  }
  if (tensor.device_index != device_space_->device_index()) {
    return fmt::format("is on cuda:{}, but this rank's engine works on cuda:{} (its local rank "
                       "modulo the visible devices); give each rank its own GPU with "
                       "CUDA_VISIBLE_DEVICES, or move the tensor",
                       tensor.device_index, device_space_->device_index());
  }
  if (tensor.numel() > 0 && backend::device_of(tensor.data) != Device::cuda) {
    return "is marked as a CUDA tensor, but its data pointer is host memory";
  }
  return std::nullopt;
}

memory::MemorySpace& Executor::memory_for(Device device) {
  if (device == Device::cpu) return host_memory_;
  if (!device_space_) {
    throw core::rank_error(ErrorKind::invalid_argument, reported_rank_,
                           "engine: the other ranks agreed on a collective of CUDA tensors, but "
                           "this rank cannot take part: {}",
                           device_unavailable_);
  }
  return *device_space_;
}

backend::Backend& Executor::backend_for(Device device) {
  if (device == Device::cpu) return *data_;
  memory_for(device);  // the same check
  return *device_data_;
}

void Executor::execute(const CycleResponse& response, const FusionGroup& group) {
  const auto& head = response.ready[group.members.front()];
  // Counted before the Works complete: a caller that reads the stats once its wait() returns
  // sees the collective that completed it.
  ++collectives_;
  try {
    if (head.fp.op_type == OpType::allreduce) {
      run_allreduce(response, group);
    } else if (group.fused && head.fp.op_type == OpType::reducescatter) {
      run_reducescatters_fused(response, group);
    } else if (group.fused) {
      run_allgathers_fused(response, group);
    } else {
      run_single(head, outstanding_.find(head.seq));
      outstanding_.complete(head.seq, nullptr);
      if (progress_) progress_->collective();
    }
  } catch (Error& error) {
    // The failed collective's number and backend travel with the error to every Work.
    const backend::Backend* ran = head.fp.device == Device::cpu ? data_.get() : device_data_.get();
    if (ran != nullptr && error.backend().empty()) {
      error.in_collective(ran->sequence(), std::string(ran->name()));
    }
    throw;
  }
}

void Executor::allreduce_done(const std::string& label, std::size_t tensors, DataType wire,
                              const backend::Executed& executed, Clock::time_point start) {
  const auto end = Clock::now();
  if (timeline_.enabled()) {
    timeline_.event(Timeline::kCollective, "ALLREDUCE " + label, start, end,
                     fmt::format("\"bytes\":{},\"tensors\":{},\"dtype\":\"{}\",\"algorithm\":\"{}\"",
                                 executed.bytes, tensors, to_string(wire), executed.algorithm));
  }
  if (progress_) progress_->allreduce(executed.bytes, size_, end - start);
}

void Executor::run_allreduce(const CycleResponse& response, const FusionGroup& group) {
  const auto& fp = response.ready[group.members.front()].fp;
  // A tensor run in place travels in its own type; only a fused one may be compressed.
  const DataType wire = group.fused ? wire_type(fp) : fp.dtype;
  // An average divides in the backend, exactly as the blocking call does, so both give the
  // same bits. Only a compressed float travels as a sum and is divided once it is widened
  // again: dividing in f16/bf16 would round twice.
  const bool divide_after =
      is_floating_point(fp.dtype) && fp.op == ReduceOp::avg && wire != fp.dtype;
  const ReduceOp backend_op = divide_after ? ReduceOp::sum : fp.op;
  const double post = divide_after ? fp.postscale / size_ : fp.postscale;

  auto& memory = memory_for(fp.device);
  auto& backend = backend_for(fp.device);
  memory.begin();

  // Where each member's data lives on this rank: the caller's tensor, or (a joined rank) the
  // operator's identity in scratch memory. One pass over the members (a small1000 step has
  // 1,000), each member's count computed once.
  auto& data = member_data_;
  auto& counts = member_counts_;
  data.clear();
  counts.clear();
  const std::size_t element = element_size(fp.dtype);
  std::size_t total = 0;
  std::size_t scratch_bytes = 0;
  std::vector<std::size_t> stand_ins;  // members without a tensor on this rank
  for (const auto index : group.members) {
    const auto& entry = response.ready[index];
    const std::size_t count = entry.fp.numel();
    const Request* local = outstanding_.find(entry.seq);
    if (local == nullptr) {
      stand_ins.push_back(data.size());
      scratch_bytes += count * element;
    }
    data.push_back(local != nullptr ? local->data : nullptr);
    counts.push_back(count);
    total += count;
  }
  if (!stand_ins.empty()) {
    std::byte* spare = scratch_bytes > 0 ? memory.scratch(scratch_bytes) : nullptr;
    std::uint64_t identity = 0;
    memory::fill_identity(&identity, fp.dtype, fp.op, 1);
    for (const std::size_t i : stand_ins) {
      memory.fill(spare, identity, element, counts[i]);
      data[i] = spare;
      spare += counts[i] * element;
    }
  }
  const auto label = group.members.size() == 1
                         ? response.ready[group.members.front()].fp.name
                         : fmt::format("fused x{}", group.members.size());

  // A fused group of host tensors in their own type goes to the transport as it lies: each
  // tensor is copied into the transport and reduced out of it in place, with no fusion buffer
  // to pack and unpack (issue 18). A fusion buffer in the shared window (RINGFUSE_FUSION_SHM)
  // is the caller's choice of another way, so it keeps it. Every rank decides `in_place` alike;
  // only a tensor enqueued twice in the group on this rank (its places overlap) packs it here,
  // and then this rank runs its peers' algorithm (halving-doubling) over the buffer.
  const bool in_place = group.fused && fp.device == Device::cpu && wire == fp.dtype &&
                        data_->shared_window() == nullptr && data_->takes_pieces(total, wire);
  const bool runs_in_place = in_place && place_pieces(data, counts, element);
  if (runs_in_place) {
    segments_.clear();
    if (fp.prescale != 1.0 || post != 1.0) {  // the members scaled where they lie
      for (std::size_t i = 0; i < data.size(); ++i) {
        segments_.push_back({data[i], data[i], counts[i]});
      }
    }
    if (fp.prescale != 1.0) memory.convert(segments_, fp.dtype, fp.dtype, fp.prescale);
    memory.finish();
    const auto start = Clock::now();
    const auto executed = data_->allreduce_pieces(pieces_, total, wire, backend_op);
    allreduce_done(label, group.members.size(), wire, executed, start);
    if (post != 1.0) {
      memory.convert(segments_, fp.dtype, fp.dtype, post);
      memory.finish();
    }
    fused_tensors_ += group.members.size();
  } else if (!group.fused) {
    void* buffer = data.front();
    const memory::CopySegment in_place{buffer, buffer, total};
    if (fp.prescale != 1.0) memory.convert({&in_place, 1}, fp.dtype, fp.dtype, fp.prescale);
    memory.finish();
    const auto start = Clock::now();
    const auto executed = backend.allreduce(buffer, total, fp.dtype, backend_op,
                                            Algorithm::automatic);
    allreduce_done(label, group.members.size(), fp.dtype, executed, start);
    if (post != 1.0) {
      memory.convert({&in_place, 1}, fp.dtype, fp.dtype, post);
      memory.finish();
    }
  } else {
    const std::size_t wire_bytes = element_size(wire);
    std::byte* buffer = memory.fusion_buffer(total * wire_bytes);
    auto start = Clock::now();
    // Each member's place in the buffer, as (into the buffer) or (out of it) segments.
    const auto place_members = [&](bool into_buffer) {
      segments_.clear();
      std::size_t offset = 0;
      for (std::size_t i = 0; i < group.members.size(); ++i) {
        const auto count = counts[i];
        std::byte* slot = buffer + offset * wire_bytes;
        segments_.push_back(into_buffer ? memory::CopySegment{slot, data[i], count}
                                        : memory::CopySegment{data[i], slot, count});
        offset += count;
      }
      return std::span<const memory::CopySegment>(segments_);
    };
    memory.convert(place_members(true), wire, fp.dtype, fp.prescale);
    memory.finish();
    if (timeline_.enabled()) {
      timeline_.event(Timeline::kMemcpy, "MEMCPY_IN_FUSION_BUFFER", start, Clock::now(),
                       fmt::format("\"bytes\":{}", total * wire_bytes));
    }
    start = Clock::now();
    const auto executed = backend.allreduce(buffer, total, wire, backend_op,
                                            in_place ? Algorithm::rhd : Algorithm::automatic);
    allreduce_done(label, group.members.size(), wire, executed, start);
    start = Clock::now();
    memory.convert(place_members(false), fp.dtype, wire, post);
    memory.finish();
    if (timeline_.enabled()) {
      timeline_.event(Timeline::kMemcpy, "MEMCPY_OUT_FUSION_BUFFER", start, Clock::now(),
                       fmt::format("\"bytes\":{}", total * wire_bytes));
    }
    fused_tensors_ += group.members.size();
  }
  completed_.clear();
  for (const auto index : group.members) completed_.push_back(response.ready[index].seq);
  outstanding_.complete(completed_, nullptr);  // every Work done before any waiter wakes
}

bool Executor::place_pieces(const std::vector<void*>& data, const std::vector<std::size_t>& counts,
                            std::size_t element) {
  pieces_.clear();
  for (std::size_t i = 0; i < data.size(); ++i) {
    pieces_.push_back({static_cast<std::byte*>(data[i]), counts[i] * element});
  }
  return !any_overlap(pieces_, runs_);
}

std::byte* Executor::allocate_output(const Fingerprint& fp, Request& local,
                                     const std::vector<std::int64_t>& shape, std::size_t bytes,
                                     std::optional<Error>& failure) {
  try {
    void* output = local.allocate(shape);
    if (output == nullptr && bytes > 0) throw std::runtime_error("it returned null");
    if (output != nullptr) return static_cast<std::byte*>(output);
  } catch (const std::exception& e) {
    failure = core::rank_error(ErrorKind::invalid_argument, reported_rank_,
                               "engine: {} '{}': the output allocator failed: {}",
                               to_string(fp.op_type), fp.name, e.what());
  }
  return nullptr;
}

void Executor::run_allgathers_fused(const CycleResponse& response, const FusionGroup& group) {
  const auto& head = response.ready[group.members.front()].fp;
  const std::size_t element = element_size(head.dtype);
  const auto ranks = static_cast<std::size_t>(size_);
  const auto me = static_cast<std::size_t>(rank_);
  // Member m's row length, and the elements each rank sends: its rows of every member.
  std::vector<std::size_t> row;
  std::vector<std::size_t> counts(ranks, 0);
  for (const auto index : group.members) {
    const auto& entry = response.ready[index];
    std::size_t length = 1;
    for (std::size_t d = 1; d < entry.fp.shape.size(); ++d) {
      length *= static_cast<std::size_t>(entry.fp.shape[d]);
    }
    row.push_back(length);
    for (std::size_t r = 0; r < ranks; ++r) {
      counts[r] += static_cast<std::size_t>(entry.dim0[r]) * length;
    }
  }
  std::size_t total = 0;
  std::vector<std::size_t> rank_offset;  // where each rank's block starts in the gathered buffer
  for (const auto count : counts) {
    rank_offset.push_back(total);
    total += count;
  }
  auto& memory = memory_for(head.device);
  std::byte* send = memory.scratch((counts[me] + total) * element);
  std::byte* gathered = send + counts[me] * element;

  const auto start = Clock::now();
  memory.begin();
  segments_.clear();
  std::size_t offset = 0;
  for (std::size_t m = 0; m < group.members.size(); ++m) {
    const auto& entry = response.ready[group.members[m]];
    const std::size_t count = static_cast<std::size_t>(entry.dim0[me]) * row[m];
    if (const Request* local = outstanding_.find(entry.seq); local != nullptr && count > 0) {
      segments_.push_back({send + offset * element, local->data, count});
    }
    offset += count;
  }
  memory.convert(segments_, head.dtype, head.dtype, 1.0);
  memory.finish();
  backend_for(head.device).allgatherv(send, gathered, counts, head.dtype);

  // Each member's output: rank after rank, its rows from that rank's block.
  std::vector<std::size_t> within(ranks, 0);  // elements of earlier members in each block
  std::vector<std::optional<Error>> failures(group.members.size());
  segments_.clear();
  for (std::size_t m = 0; m < group.members.size(); ++m) {
    const auto& entry = response.ready[group.members[m]];
    Request* local = outstanding_.find(entry.seq);
    std::vector<std::int64_t> shape = entry.fp.shape;
    shape.front() = 0;
    for (const auto d0 : entry.dim0) shape.front() += d0;
    const std::size_t out_count = static_cast<std::size_t>(shape.front()) * row[m];
    std::byte* output =
        local == nullptr ? nullptr
                         : allocate_output(entry.fp, *local, shape, out_count * element, failures[m]);
    std::size_t placed = 0;
    for (std::size_t r = 0; r < ranks; ++r) {
      const std::size_t count = static_cast<std::size_t>(entry.dim0[r]) * row[m];
      if (output != nullptr && count > 0) {
        segments_.push_back({output + placed * element,
                             gathered + (rank_offset[r] + within[r]) * element, count});
      }
      placed += count;
      within[r] += count;
    }
    if (local != nullptr) {
      std::lock_guard lock(local->work->mutex);
      local->work->output_shape = shape;
    }
  }
  memory.convert(segments_, head.dtype, head.dtype, 1.0);
  memory.finish();
  if (timeline_.enabled()) {
    timeline_.event(Timeline::kCollective,
                    fmt::format("allgather fused x{}", group.members.size()), start,
                    Clock::now(), fmt::format("\"bytes\":{}", total * element));
  }
  fused_tensors_ += group.members.size();  // counted before a waiter can look
  for (std::size_t m = 0; m < group.members.size(); ++m) {
    const auto seq = response.ready[group.members[m]].seq;
    outstanding_.complete(seq, failures[m] ? &*failures[m] : nullptr);
    if (progress_) progress_->collective();
  }
}

void Executor::run_reducescatters_fused(const CycleResponse& response,
                                        const FusionGroup& group) {
  const auto& head = response.ready[group.members.front()].fp;
  const std::size_t element = element_size(head.dtype);
  const auto ranks = static_cast<std::size_t>(size_);
  std::vector<Request*> locals;  // nobody has joined: the coordinator refuses that
  std::vector<std::size_t> block;  // each member's output elements
  std::size_t per_rank = 0;
  for (const auto index : group.members) {
    const auto& entry = response.ready[index];
    locals.push_back(outstanding_.find(entry.seq));
    block.push_back(entry.fp.numel() / ranks);
    per_rank += block.back();
  }
  auto& memory = memory_for(head.device);
  std::byte* packed = memory.scratch((ranks + 1) * per_rank * element);
  std::byte* reduced = packed + ranks * per_rank * element;

  const auto start = Clock::now();
  memory.begin();
  segments_.clear();
  for (std::size_t r = 0; r < ranks; ++r) {
    std::size_t offset = r * per_rank;
    for (std::size_t m = 0; m < locals.size(); ++m) {
      const auto* input = static_cast<const std::byte*>(locals[m]->data);
      segments_.push_back({packed + offset * element, input + r * block[m] * element, block[m]});
      offset += block[m];
    }
  }
  memory.convert(segments_, head.dtype, head.dtype, 1.0);
  memory.finish();
  backend_for(head.device).reducescatter(packed, reduced, per_rank, head.dtype, head.op);
  segments_.clear();
  std::size_t offset = 0;
  for (std::size_t m = 0; m < locals.size(); ++m) {
    segments_.push_back({locals[m]->output, reduced + offset * element, block[m]});
    offset += block[m];
  }
  memory.convert(segments_, head.dtype, head.dtype, 1.0);
  memory.finish();
  if (timeline_.enabled()) {
    timeline_.event(Timeline::kCollective,
                    fmt::format("reducescatter fused x{}", group.members.size()), start,
                    Clock::now(), fmt::format("\"bytes\":{}", ranks * per_rank * element));
  }
  fused_tensors_ += group.members.size();  // counted before a waiter can look
  for (const auto index : group.members) {
    outstanding_.complete(response.ready[index].seq, nullptr);
    if (progress_) progress_->collective();
  }
}

void Executor::run_alltoallv(const ReadyEntry& entry, Request& local) {
  const auto& fp = local.fp;  // entry.fp carries another rank's splits
  std::size_t row = 1;
  for (std::size_t d = 1; d < fp.shape.size(); ++d) row *= static_cast<std::size_t>(fp.shape[d]);
  const auto n = static_cast<std::size_t>(size_);
  std::vector<std::size_t> send_counts;
  std::vector<std::size_t> recv_counts;
  std::vector<std::int64_t> received;
  std::int64_t rows = 0;
  for (std::size_t peer = 0; peer < n; ++peer) {
    send_counts.push_back(static_cast<std::size_t>(fp.splits[peer]) * row);
    received.push_back(entry.dim0.at(peer * n + static_cast<std::size_t>(rank_)));
    recv_counts.push_back(static_cast<std::size_t>(received.back()) * row);
    rows += received.back();
  }
  std::vector<std::int64_t> shape = fp.shape;
  shape.front() = rows;
  std::optional<Error> failure;
  const std::size_t out_bytes = static_cast<std::size_t>(rows) * row * element_size(fp.dtype);
  std::byte* output = allocate_output(fp, local, shape, out_bytes, failure);
  if (output == nullptr) output = memory_for(fp.device).scratch(out_bytes);
  backend_for(fp.device).alltoallv(local.data, send_counts, output, recv_counts, fp.dtype);
  {
    std::lock_guard lock(local.work->mutex);
    local.work->output_shape = shape;
    local.work->received_splits = std::move(received);
  }
  if (failure) outstanding_.complete(entry.seq, &*failure);
}

void Executor::run_reducescatterv(const ReadyEntry& entry, Request& local) {
  const auto& fp = entry.fp;
  const auto rows = static_cast<std::size_t>(fp.shape.front());
  const std::size_t row = rows == 0 ? 0 : fp.numel() / rows;
  const auto n = static_cast<std::size_t>(size_);
  const auto r = static_cast<std::size_t>(rank_);
  const std::size_t mine = rows / n + (r < rows % n ? 1 : 0);
  const std::size_t first = r * (rows / n) + std::min(r, rows % n);
  std::vector<std::int64_t> shape = fp.shape;
  shape.front() = static_cast<std::int64_t>(mine);
  auto& memory = memory_for(fp.device);
  const std::size_t out_bytes = mine * row * element_size(fp.dtype);
  // The whole input is reduced in engine scratch (the caller's input stays as it was), and
  // this rank's rows are copied out: the backends have no uneven reduce-scatter.
  std::byte* reduced = memory.scratch(fp.bytes() + out_bytes);
  std::optional<Error> failure;
  std::byte* output = allocate_output(fp, local, shape, out_bytes, failure);
  if (output == nullptr) output = reduced + fp.bytes();
  memory.begin();
  const memory::CopySegment in{reduced, local.data, fp.numel()};
  memory.convert({&in, 1}, fp.dtype, fp.dtype, 1.0);
  memory.finish();
  backend_for(fp.device).allreduce(reduced, fp.numel(), fp.dtype, fp.op, Algorithm::automatic);
  const memory::CopySegment out{output, reduced + first * row * element_size(fp.dtype),
                                mine * row};
  memory.convert({&out, 1}, fp.dtype, fp.dtype, 1.0);
  memory.finish();
  {
    std::lock_guard lock(local.work->mutex);
    local.work->output_shape = shape;
  }
  if (failure) outstanding_.complete(entry.seq, &*failure);
}

void Executor::run_single(const ReadyEntry& entry, Request* local) {
  const auto& fp = entry.fp;
  const auto start = Clock::now();
  std::string args = fmt::format("\"bytes\":{}", fp.bytes());
  switch (fp.op_type) {
    case OpType::allreduce: break;  // handled by run_allreduce
    case OpType::barrier: backend_for(fp.device).barrier(); break;
    case OpType::broadcast: {
      void* data = local != nullptr ? local->data : memory_for(fp.device).scratch(fp.bytes());
      backend_for(fp.device).broadcast(data, fp.numel(), fp.dtype, fp.root);
      break;
    }
    case OpType::alltoall: {
      const std::vector<std::size_t> counts(static_cast<std::size_t>(size_),
                                            fp.numel() / static_cast<std::size_t>(size_));
      backend_for(fp.device).alltoallv(local->data, counts, local->output, counts, fp.dtype);
      break;
    }
    case OpType::alltoallv: run_alltoallv(entry, *local); break;
    case OpType::reducescatterv: run_reducescatterv(entry, *local); break;
    case OpType::reducescatter:
      backend_for(fp.device).reducescatter(local->data, local->output,
                                           fp.numel() / static_cast<std::size_t>(size_), fp.dtype,
                                           fp.op);
      break;
    case OpType::allgather: {
      std::size_t row = 1;
      for (std::size_t d = 1; d < fp.shape.size(); ++d) row *= static_cast<std::size_t>(fp.shape[d]);
      std::vector<std::size_t> counts;
      std::int64_t rows = 0;
      for (const auto d0 : entry.dim0) {
        counts.push_back(static_cast<std::size_t>(d0) * row);
        rows += d0;
      }
      std::vector<std::int64_t> shape = fp.shape;
      shape.front() = rows;
      const std::size_t out_bytes = static_cast<std::size_t>(rows) * row * element_size(fp.dtype);
      void* output = nullptr;
      std::optional<Error> allocation_error;
      if (local != nullptr) {
        try {
          output = local->allocate(shape);
          if (output == nullptr && out_bytes > 0) throw std::runtime_error("it returned null");
        } catch (const std::exception& e) {
          allocation_error = core::rank_error(ErrorKind::invalid_argument, reported_rank_,
                                              "engine: allgather '{}': the output allocator "
                                              "failed: {}",
                                              fp.name, e.what());
          output = nullptr;
        }
      }
      // Take part even without an output (joined rank, failed allocator): the others wait.
      std::byte* sink = output == nullptr ? memory_for(fp.device).scratch(out_bytes)
                                          : static_cast<std::byte*>(output);
      const void* send = local != nullptr ? local->data : sink;
      backend_for(fp.device).allgatherv(send, sink, counts, fp.dtype);
      if (local != nullptr) {
        std::lock_guard lock(local->work->mutex);
        local->work->output_shape = shape;
      }
      if (allocation_error) outstanding_.complete(entry.seq, &*allocation_error);
      args = fmt::format("\"bytes\":{}", out_bytes);
      break;
    }
  }
  if (timeline_.enabled()) {
    timeline_.event(Timeline::kCollective, fmt::format("{} {}", to_string(fp.op_type), fp.name),
                     start, Clock::now(), args);
  }
}

}  // namespace ringfuse::engine
