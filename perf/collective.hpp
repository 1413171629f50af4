// The collectives ringfuse-perf measures, how a nominal byte size maps onto their buffers, and
// nccl-tests' bus-bandwidth factors (so busbw reads the same as in nccl-tests' tables).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "ringfuse/types.hpp"

namespace ringfuse::perf {

enum class Collective : std::uint8_t { allreduce, broadcast, allgather, reducescatter, alltoall, barrier };

std::string_view to_string(Collective collective);
std::optional<Collective> parse_collective(std::string_view name);

/// Whether the collective combines values (and so takes a reduction operator).
bool reduces(Collective collective);

/// Buffer shapes for one size, following nccl-tests: `count` and `bytes` describe the largest
/// buffer (allgather's output, reducescatter's input, alltoall's send buffer), rounded down to a
/// multiple of the world size where the collective splits it into per-rank blocks.
struct Layout {
  std::size_t count = 0;       // elements in the size column
  std::size_t bytes = 0;       // count * element size
  std::size_t input_count = 0;
  std::size_t output_count = 0;
  std::size_t block = 0;       // per-rank block (allgather, reducescatter, alltoall)
  bool in_place = false;       // the output buffer is also the input (allreduce, broadcast)
};

Layout make_layout(Collective collective, DataType type, std::size_t nominal_bytes, int world_size);

/// busbw = algbw * factor: nccl-tests' definitions, which make busbw comparable to the link
/// bandwidth whatever the world size.
double bus_factor(Collective collective, int world_size);

}  // namespace ringfuse::perf
