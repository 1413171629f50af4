// The smallest proof that a world of transports works: one exchange around the ring.
#pragma once

#include <chrono>
#include <future>
#include <vector>

#include <gtest/gtest.h>

namespace ringfuse::test_support {

/// Every rank r of `transports` (pointers to transports or meshes, indexed by rank, with
/// send_recv) sends r to the next rank and receives from the previous one, all at once;
/// expects each to get its predecessor's number within 10 s. A fatal failure when one does
/// not finish: call it under ASSERT_NO_FATAL_FAILURE.
template <typename Transports>
void expect_ring_exchange(Transports& transports) {
  const int size = static_cast<int>(transports.size());
  std::vector<std::future<int>> received;
  for (int r = 0; r < size; ++r) {
    received.push_back(std::async(std::launch::async, [&, r] {
      int out = r, in = -1;
      transports[r]->send_recv((r + 1) % size, &out, sizeof(out), (r + size - 1) % size, &in,
                               sizeof(in));
      return in;
    }));
  }
  for (int r = 0; r < size; ++r) {
    ASSERT_EQ(received[r].wait_for(std::chrono::seconds(10)), std::future_status::ready);
    EXPECT_EQ(received[r].get(), (r + size - 1) % size);
  }
}

}  // namespace ringfuse::test_support
