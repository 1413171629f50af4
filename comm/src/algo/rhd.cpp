#include <vector>

#include "algo/algorithms.hpp"
#include "reduce/reduce.hpp"

namespace ringfuse::algo {
namespace {

struct Range {
  std::size_t lo;
  std::size_t hi;
};

}  // namespace

void rhd_allreduce(Transport& transport, Workspace& workspace, const ReduceBuffer& buffer) {
  const int size = transport.size();
  const int rank = transport.rank();
  const std::size_t element_bytes = element_size(buffer.type);
  const std::size_t bytes = buffer.count * element_bytes;
  int power = 1;
  while (power * 2 <= size) power *= 2;
  const int extra = size - power;

  // Fold: among the first 2·extra ranks, each even rank gives its buffer to the odd rank after
  // it and sits out, leaving a power-of-two group.
  int group_rank = -1;
  if (rank < 2 * extra) {
    if (rank % 2 == 0) {
      transport.send(rank + 1, buffer.data, bytes);
    } else {
      exchange_and_reduce(transport, workspace, transport::kNoPeer, nullptr, 0, rank - 1,
                          buffer.data, buffer.count, buffer.type, buffer.op);
      group_rank = rank / 2;
    }
  } else {
    group_rank = rank - extra;
  }
  auto real_rank = [extra](int member) { return member < extra ? member * 2 + 1 : member + extra; };

  if (group_rank >= 0) {
    // Recursive halving: exchange half of the current range with the partner at distance
    // `mask`, keep the half this rank is responsible for, reduced.
    std::vector<Range> history;
    Range range{0, buffer.count};
    for (int mask = power / 2; mask >= 1; mask /= 2) {
      const int partner_member = group_rank ^ mask;
      const int partner = real_rank(partner_member);
      const std::size_t mid = range.lo + (range.hi - range.lo) / 2;
      const bool keep_low = group_rank < partner_member;
      const Range keep = keep_low ? Range{range.lo, mid} : Range{mid, range.hi};
      const Range give = keep_low ? Range{mid, range.hi} : Range{range.lo, mid};
      if (mask == 1) {
        // The last halving step and the first doubling step swap halves of the same range
        // with the same partner: one pipelined exchange does both, dividing for avg between.
        reduce_and_return(transport, workspace, partner, buffer,
                          Block{give.lo, give.hi - give.lo}, Block{keep.lo, keep.hi - keep.lo},
                          static_cast<std::size_t>(size));
        break;
      }
      exchange_and_reduce(transport, workspace, partner, buffer.data + give.lo * element_bytes,
                          (give.hi - give.lo) * element_bytes, partner,
                          buffer.data + keep.lo * element_bytes, keep.hi - keep.lo, buffer.type,
                          buffer.op);
      history.push_back(range);
      range = keep;
    }
    // Recursive doubling: undo the halving in reverse, swapping finished halves; the first
    // step (mask 1) was done by reduce_and_return.
    for (int mask = 2; mask < power; mask *= 2) {
      const int partner = real_rank(group_rank ^ mask);
      const Range parent = history.back();
      history.pop_back();
      const Range other = range.lo == parent.lo ? Range{range.hi, parent.hi}
                                                : Range{parent.lo, range.lo};
      transport.send_recv(partner, buffer.data + range.lo * element_bytes,
                          (range.hi - range.lo) * element_bytes, partner,
                          buffer.data + other.lo * element_bytes,
                          (other.hi - other.lo) * element_bytes);
      range = parent;
    }
  }

  // Unfold: hand the result back to the ranks that sat out.
  if (rank < 2 * extra) {
    if (rank % 2 == 1) {
      transport.send(rank - 1, buffer.data, bytes);
    } else {
      transport.recv(rank + 1, buffer.data, bytes);
    }
  }
}

}  // namespace ringfuse::algo
