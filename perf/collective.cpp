#include "collective.hpp"

#include <array>
#include <utility>

namespace ringfuse::perf {
namespace {
constexpr std::array<std::pair<Collective, std::string_view>, 6> kNames{{
    {Collective::allreduce, "allreduce"},
    {Collective::broadcast, "broadcast"},
    {Collective::allgather, "allgather"},
    {Collective::reducescatter, "reducescatter"},
    {Collective::alltoall, "alltoall"},
    {Collective::barrier, "barrier"},
}};
}  // namespace

std::string_view to_string(Collective collective) {
  for (const auto& [c, name] : kNames) {
    if (c == collective) return name;
  }
  return "?";
}

std::optional<Collective> parse_collective(std::string_view name) {
  for (const auto& [c, n] : kNames) {
    if (n == name) return c;
  }
  return std::nullopt;
}

bool reduces(Collective collective) {
  return collective == Collective::allreduce || collective == Collective::reducescatter;
}

Layout make_layout(Collective collective, DataType type, std::size_t nominal_bytes,
                   int world_size) {
  const std::size_t n = static_cast<std::size_t>(world_size);
  const std::size_t es = element_size(type);
  Layout l;
  std::size_t count = nominal_bytes / es;
  switch (collective) {
    case Collective::barrier: count = 0; break;
    case Collective::allreduce:
    case Collective::broadcast:
      l.input_count = l.output_count = count;
      l.in_place = true;
      break;
    case Collective::allgather:
      count -= count % n;
      l.block = count / n;
      l.input_count = l.block;
      l.output_count = count;
      break;
    case Collective::reducescatter:
      count -= count % n;
      l.block = count / n;
      l.input_count = count;
      l.output_count = l.block;
      break;
    case Collective::alltoall:
      count -= count % n;
      l.block = count / n;
      l.input_count = l.output_count = count;
      break;
  }
  l.count = count;
  l.bytes = count * es;
  return l;
}

double bus_factor(Collective collective, int world_size) {
  const double n = world_size;
  switch (collective) {
    case Collective::allreduce: return 2.0 * (n - 1) / n;
    case Collective::allgather:
    case Collective::reducescatter:
    case Collective::alltoall: return (n - 1) / n;
    case Collective::broadcast: return 1.0;
    case Collective::barrier: return 0.0;
  }
  return 0.0;
}

}  // namespace ringfuse::perf
