// The response cache finds a fingerprint by Fingerprint::hash() and then matches(): whatever
// matches must hash alike, or a cached tensor would be negotiated the long way (or, with a
// stale index, not found) every step.
#include <gtest/gtest.h>

#include "engine/fingerprint.hpp"
#include "engine/response_cache.hpp"

namespace {

using ringfuse::engine::Fingerprint;
using ringfuse::engine::OpType;
using ringfuse::engine::ResponseCache;

Fingerprint gradient() {
  Fingerprint fp;
  fp.name = "model.layer4.2.conv3.weight.grad";
  fp.shape = {2048, 512, 1, 1};
  return fp;
}

TEST(FingerprintHash, WhatMatchesHashesAlike) {
  auto a = gradient();
  auto b = gradient();
  a.prescale = 0.0;
  b.prescale = -0.0;  // equal as doubles
  a.postscale = b.postscale = 0.125;
  ASSERT_TRUE(a.matches(b));
  EXPECT_EQ(a.hash(), b.hash());

  auto gather_a = gradient();
  auto gather_b = gradient();
  gather_a.op_type = gather_b.op_type = OpType::allgather;
  gather_b.shape.front() = 7;  // dimension 0 may differ
  ASSERT_TRUE(gather_a.matches(gather_b));
  EXPECT_EQ(gather_a.hash(), gather_b.hash());
}

TEST(FingerprintHash, TheCacheFindsByScaleAndTellsScalesApart) {
  ResponseCache cache(8);
  auto half = gradient();
  half.postscale = 0.5;
  auto quarter = gradient();
  quarter.postscale = 0.25;
  const auto half_index = cache.insert(half);
  const auto quarter_index = cache.insert(quarter);
  ASSERT_TRUE(half_index && quarter_index);
  EXPECT_NE(*half_index, *quarter_index);
  EXPECT_EQ(cache.find(gradient()), std::nullopt);  // scale 1
  auto again = gradient();
  again.postscale = 0.25;
  EXPECT_EQ(cache.find(again), quarter_index);
  auto zero = gradient();
  zero.prescale = -0.0;
  const auto zero_index = cache.insert(zero);
  zero.prescale = 0.0;
  EXPECT_EQ(cache.find(zero), zero_index);
}

// holds() is the cheap check behind guessing an index: true exactly where find() would
// answer that index, so a guess never changes what a rank announces.
TEST(FingerprintHash, HoldsSaysWhatFindWouldAnswer) {
  ResponseCache cache(2);
  auto a = gradient();
  auto b = gradient();
  b.name = "model.fc.weight.grad";
  auto c = gradient();
  c.shape = {2048, 512, 3, 3};
  const auto ia = cache.insert(a);
  const auto ib = cache.insert(b);
  ASSERT_TRUE(ia && ib);
  EXPECT_TRUE(cache.holds(*ia, a));
  EXPECT_TRUE(cache.holds(*ib, b));
  EXPECT_FALSE(cache.holds(*ia, b));
  EXPECT_FALSE(cache.holds(*ib, a));
  EXPECT_FALSE(cache.holds(*ia, c));  // same name, another shape
  EXPECT_FALSE(cache.holds(2, a));    // past the slots
  cache.touch(*ib);
  const auto ic = cache.insert(c);  // evicts a, the least recently used
  ASSERT_TRUE(ic);
  EXPECT_EQ(*ic, *ia);
  EXPECT_FALSE(cache.holds(*ia, a));
  EXPECT_TRUE(cache.holds(*ic, c));
  EXPECT_FALSE(cache.find(a).has_value());
}

}  // namespace
