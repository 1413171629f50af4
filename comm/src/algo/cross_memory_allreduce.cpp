#include <algorithm>
#include <cstring>

#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {
namespace {

// A claimed piece and the peer piece being added to it stay in L2 while every rank's copy
// passes through; pieces small enough that the ranks that are running share the work evenly.
constexpr std::size_t kPieceBytes = std::size_t{128} << 10;

std::size_t piece_elements(DataType type) {
  return std::max<std::size_t>(1, kPieceBytes / element_size(type));
}

}  // namespace

std::size_t cross_memory_pieces(std::size_t count, DataType type) {
  const std::size_t piece = piece_elements(type);
  return (count + piece - 1) / piece;
}

void cross_memory_allreduce(transport::PeerMemory& memory, Workspace& workspace,
                            const ReduceBuffer& buffer) {
  const int size = memory.size();
  const int rank = memory.rank();
  const std::size_t element_bytes = element_size(buffer.type);
  const std::size_t piece = piece_elements(buffer.type);
  std::byte* scratch = workspace.get(Workspace::kReceive, 2 * piece * element_bytes);
  std::byte* landed = scratch + piece * element_bytes;

  memory.open(buffer.data, buffer.count * element_bytes,
              cross_memory_pieces(buffer.count, buffer.type));
  while (const auto claimed = memory.claim()) {
    const std::size_t start = *claimed * piece;
    const std::size_t count = std::min(piece, buffer.count - start);
    const std::size_t offset = start * element_bytes;
    const std::size_t bytes = count * element_bytes;
    std::byte* mine = buffer.data + offset;
    // In rank order, whoever claimed the piece, so the result is the same bits in every run.
    // The first two ranks' copies may be combined either way round (a + b is b + a, bit for bit):
    // ranks 0 and 1 sum straight into their own buffer, the others in scratch.
    std::byte* sum = rank <= 1 ? mine : scratch;
    if (rank > 1) memory.read(0, offset, sum, bytes);
    for (int owner = rank <= 1 ? 0 : 1; owner < size; ++owner) {
      if (owner == rank) {
        if (sum != mine) reduce::reduce_into(sum, mine, count, buffer.type, buffer.op);
        continue;
      }
      memory.read(owner, offset, landed, bytes);
      reduce::reduce_into(sum, landed, count, buffer.type, buffer.op);
    }
    if (buffer.op == ReduceOp::avg) {
      reduce::divide(sum, count, buffer.type, static_cast<std::size_t>(size));
    }
    if (sum != mine) std::memcpy(mine, sum, bytes);
    for (int step = 1; step < size; ++step) memory.write((rank + step) % size, offset, sum, bytes);
    memory.finish();
  }
  memory.close();
}

}  // namespace ringfuse::algo
