// One rank of mp_split_test's failure runs: a world, its parity child (Context::split) and a
// process set of the odd ranks, all-reducing on each in turn until each has failed or, once
// the world failed, the child has gone on working for a while (RINGFUSE_GROUP_FAILURES=
// contain). Prints one line per group's failure ("GROUP <label> FAILED: <error>"), which the
// test reads.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "ringfuse/context.hpp"
#include "ringfuse/error.hpp"

int main() {
  using namespace ringfuse;
  std::unique_ptr<Context> world;
  try {
    world = init();
  } catch (const std::exception& e) {
    std::cerr << "init failed: " << e.what() << std::endl;
    return 2;
  }
  const int rank = world->rank();
  std::unique_ptr<Context> child = world->split(rank % 2, rank);
  const std::vector<int> odd{1, 3};
  const int set = world->add_process_set(odd);
  bool set_ok = rank % 2 == 1;
  std::vector<float> data(std::size_t{1} << 16, 1.0f);
  bool world_ok = true;
  bool child_ok = true;
  int child_rounds_alone = 0;
  const auto attempt = [&](Context& group, bool& ok) {
    try {
      group.allreduce(data.data(), data.size(), DataType::f32, ReduceOp::max);
    } catch (const Error& e) {
      std::cout << fmt::format("rank {}: GROUP {} FAILED: {}", rank, group.label(), e.what())
                << std::endl;
      ok = false;
    }
  };
  for (long round = 0; world_ok || child_ok; ++round) {
    if (world_ok) attempt(*world, world_ok);
    if (child_ok) attempt(*child, child_ok);
    if (set_ok) {
      try {
        world->engine(set)
            .allreduce("grad", TensorView{data.data(), DataType::f32,
                                          {static_cast<std::int64_t>(data.size())}})
            .wait(std::chrono::seconds(60));
      } catch (const Error& e) {
        std::cout << fmt::format("rank {}: GROUP process set {} FAILED: {}", rank, set, e.what())
                  << std::endl;
        set_ok = false;
      }
    }
    if (round == 0) std::cout << fmt::format("rank {}: running", rank) << std::endl;
    if (!world_ok && child_ok && ++child_rounds_alone == 50) {
      std::cout << fmt::format("rank {}: GROUP {} WORKS after the world failed", rank,
                               child->label())
                << std::endl;
      break;
    }
  }
  child.reset();
  if (!set_ok && rank % 2 == 1) {
    // The failed set's engine has stopped; leave without the orderly removal, which would
    // negotiate with the dead rank.
    std::cout.flush();
    std::_Exit(0);
  }
  return 0;
}
