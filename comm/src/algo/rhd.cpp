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
  const Piece whole{buffer.data, buffer.count * element_size(buffer.type)};
  rhd_allreduce(transport, workspace, ScatteredBuffer({&whole, 1}, buffer.type, buffer.op));
}

void rhd_allreduce(Transport& transport, Workspace& workspace, const ScatteredBuffer& buffer) {
  const int size = transport.size();
  const int rank = transport.rank();
  const std::size_t count = buffer.count();
  const auto staging = [&workspace](std::size_t bytes) {
    return workspace.get(Workspace::kReceive, bytes);
  };
  // One vector per range held at a time, so that each step reuses their memory.
  std::vector<Piece> first;
  std::vector<Piece> second;
  const Pieces none;
  int power = 1;
  while (power * 2 <= size) power *= 2;
  const int extra = size - power;

  // Fold: among the first 2·extra ranks, each even rank gives its buffer to the odd rank after
  // it and sits out, leaving a power-of-two group.
  int group_rank = -1;
  if (rank < 2 * extra) {
    if (rank % 2 == 0) {
      transport.send_recv_pieces(rank + 1, buffer.slice(0, count, first), transport::kNoPeer,
                                 none, staging);
    } else {
      transport.send_recv_reduce_pieces(transport::kNoPeer, none, rank - 1,
                                        buffer.slice(0, count, first), buffer.type(),
                                        buffer.op(), staging);
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
    bool returned_first_doubling = false;
    Range range{0, count};
    for (int mask = power / 2; mask >= 1; mask /= 2) {
      const int partner_member = group_rank ^ mask;
      const int partner = real_rank(partner_member);
      const std::size_t mid = range.lo + (range.hi - range.lo) / 2;
      const bool keep_low = group_rank < partner_member;
      const Range keep = keep_low ? Range{range.lo, mid} : Range{mid, range.hi};
      const Range give = keep_low ? Range{mid, range.hi} : Range{range.lo, mid};
      const Pieces give_pieces = buffer.slice(give.lo, give.hi, first);
      const Pieces keep_pieces = buffer.slice(keep.lo, keep.hi, second);
      if (mask == 1 && give_pieces.size() == 1 && keep_pieces.size() == 1) {
        // The last halving step and the first doubling step swap halves of the same range
        // with the same partner: one pipelined exchange does both, dividing for avg between.
        // Both ranks take this branch alike: the partner's halves are these two, swapped,
        // and a fused group's tensors have the same sizes on every rank.
        Transport::Finish finish;
        if (buffer.op() == ReduceOp::avg) {
          finish = [type = buffer.type(), size](std::byte* data, std::size_t elements) {
            reduce::divide(data, elements, type, static_cast<std::size_t>(size));
          };
        }
        transport.reduce_and_return(partner, give_pieces.front().data, give.hi - give.lo,
                                    keep_pieces.front().data, keep.hi - keep.lo, buffer.type(),
                                    buffer.op(), staging, finish);
        returned_first_doubling = true;
        break;
      }
      transport.send_recv_reduce_pieces(partner, give_pieces, partner, keep_pieces,
                                        buffer.type(), buffer.op(), staging);
      history.push_back(range);
      range = keep;
    }
    if (buffer.op() == ReduceOp::avg && !returned_first_doubling) {
      for (const Piece& piece : buffer.slice(range.lo, range.hi, first)) {
        reduce::divide(piece.data, piece.bytes / buffer.element_bytes(), buffer.type(),
                       static_cast<std::size_t>(size));
      }
    }
    // Recursive doubling: undo the halving in reverse, swapping finished halves (the first
    // step is done when reduce_and_return did it).
    for (int mask = returned_first_doubling ? 2 : 1; mask < power; mask *= 2) {
      const int partner = real_rank(group_rank ^ mask);
      const Range parent = history.back();
      history.pop_back();
      const Range other = range.lo == parent.lo ? Range{range.hi, parent.hi}
                                                : Range{parent.lo, range.lo};
      transport.send_recv_pieces(partner, buffer.slice(range.lo, range.hi, first), partner,
                                 buffer.slice(other.lo, other.hi, second), staging);
      range = parent;
    }
  }

  // Unfold: hand the result back to the ranks that sat out.
  if (rank < 2 * extra) {
    if (rank % 2 == 1) {
      transport.send_recv_pieces(rank - 1, buffer.slice(0, count, first), transport::kNoPeer,
                                 none, staging);
    } else {
      transport.send_recv_pieces(transport::kNoPeer, none, rank + 1,
                                 buffer.slice(0, count, first), staging);
    }
  }
}

}  // namespace ringfuse::algo
