#include "algo/algorithms.hpp"

namespace ringfuse::algo {

Algorithm allreduce(Algorithm algorithm, Transport& transport, Workspace& workspace,
                    const ReduceBuffer& buffer) {
  if (algorithm == Algorithm::automatic) {
    algorithm = choose_allreduce(buffer.count * element_size(buffer.type), buffer.count,
                                 transport.size());
  }
  switch (algorithm) {
    case Algorithm::ring: ring_allreduce(transport, workspace, buffer); break;
    case Algorithm::tree: tree_allreduce(transport, workspace, buffer); break;
    case Algorithm::rhd:
    case Algorithm::automatic: rhd_allreduce(transport, workspace, buffer); break;
  }
  return algorithm;
}

}  // namespace ringfuse::algo
