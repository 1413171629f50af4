// ringfuse-perf's pure pieces: size suffixes, buffer layouts and nccl-tests' busbw factors.
#include <gtest/gtest.h>

#include "collective.hpp"
#include "size_parse.hpp"

namespace ringfuse::perf {
namespace {

TEST(PerfSizeParse, SuffixesAreBinary) {
  EXPECT_EQ(parse_size("4096"), 4096u);
  EXPECT_EQ(parse_size("4K"), 4096u);
  EXPECT_EQ(parse_size("4k"), 4096u);
  EXPECT_EQ(parse_size("256M"), 256u << 20);
  EXPECT_EQ(parse_size("1G"), 1u << 30);
  EXPECT_EQ(parse_size("8MiB"), 8u << 20);
  EXPECT_EQ(parse_size("8MB"), 8u << 20);
  EXPECT_EQ(parse_size("12B"), 12u);
}

TEST(PerfSizeParse, RejectsGarbageAndOverflow) {
  EXPECT_FALSE(parse_size(""));
  EXPECT_FALSE(parse_size("K"));
  EXPECT_FALSE(parse_size("4X"));
  EXPECT_FALSE(parse_size("-4K"));
  EXPECT_FALSE(parse_size("4 K"));
  EXPECT_FALSE(parse_size("99999999999999999999"));
  EXPECT_FALSE(parse_size("17179869184G"));  // 2^34 GiB overflows 64 bits
}

TEST(PerfSizeParse, FormatsShortest) {
  EXPECT_EQ(format_size(4096), "4K");
  EXPECT_EQ(format_size(256u << 20), "256M");
  EXPECT_EQ(format_size(1000), "1000");
}

TEST(PerfCollective, BusFactorsMatchNcclTests) {
  EXPECT_DOUBLE_EQ(bus_factor(Collective::allreduce, 4), 1.5);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::allgather, 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::reducescatter, 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::alltoall, 4), 0.75);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::broadcast, 4), 1.0);
}

TEST(PerfCollective, LayoutsRoundToWholeBlocks) {
  const Layout ag = make_layout(Collective::allgather, DataType::f32, 4096, 3);
  EXPECT_EQ(ag.count, 1023u);  // 1024 elements, rounded down to a multiple of 3
  EXPECT_EQ(ag.block, 341u);
  EXPECT_EQ(ag.input_count, 341u);
  EXPECT_EQ(ag.output_count, 1023u);
  const Layout rs = make_layout(Collective::reducescatter, DataType::f16, 4096, 4);
  EXPECT_EQ(rs.input_count, 2048u);
  EXPECT_EQ(rs.output_count, 512u);
  const Layout ar = make_layout(Collective::allreduce, DataType::f64, 4096, 3);
  EXPECT_TRUE(ar.in_place);
  EXPECT_EQ(ar.count, 512u);
  EXPECT_EQ(make_layout(Collective::barrier, DataType::f32, 4096, 2).count, 0u);
}

}  // namespace
}  // namespace ringfuse::perf
