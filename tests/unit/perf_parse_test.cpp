// ringfuse-perf's pure pieces: size suffixes, buffer layouts and nccl-tests' busbw factors.
#include <gtest/gtest.h>

#include <vector>

#include "collective.hpp"
#include "fusion_model.hpp"
#include "ringfuse/error.hpp"
#include "size_parse.hpp"
#include "split_color.hpp"

namespace ringfuse::perf {
namespace {

TEST(PerfSplitColor, EachExpressionColorsRanksAsDocumented) {
  for (const char* good : {"host", "parity", "half", "mod:1", "mod:3"}) {
    EXPECT_FALSE(split_expression_problem(good)) << good;
  }
  for (const char* bad : {"", "odd", "mod:", "mod:0", "mod:-2", "mod:2x", "HOST"}) {
    EXPECT_TRUE(split_expression_problem(bad)) << bad;
  }
  // 6 ranks, 3 per host.
  std::vector<int> host, parity, half, mod3;
  for (int rank = 0; rank < 6; ++rank) {
    host.push_back(split_color("host", rank, 6, rank / 3));
    parity.push_back(split_color("parity", rank, 6, 0));
    half.push_back(split_color("half", rank, 6, 0));
    mod3.push_back(split_color("mod:3", rank, 6, 0));
  }
  EXPECT_EQ(host, (std::vector<int>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(parity, (std::vector<int>{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(half, (std::vector<int>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(mod3, (std::vector<int>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(split_color("half", 2, 5, 0), 0);  // the lower half takes the odd one
}

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

TEST(PerfFusionModel, RealModelsHaveTheirPublishedTensorAndParameterCounts) {
  const auto resnet = make_model("resnet50");
  EXPECT_EQ(resnet.gradients.size(), 161u);
  EXPECT_EQ(resnet.total_numel, 25'557'032u);
  const auto bert = make_model("bert-base");
  EXPECT_EQ(bert.gradients.size(), 199u);
  EXPECT_EQ(bert.total_numel, 109'482'240u);  // BertModel (bert-base-uncased)
  EXPECT_EQ(bert.gradients.front().name, "embeddings.word_embeddings.weight");
  EXPECT_EQ(bert.gradients.back().name, "pooler.dense.bias");
}

TEST(PerfFusionModel, UniformModelsAreCountTimesBytes) {
  const auto model = make_model("uniform:200x1M");
  EXPECT_EQ(model.gradients.size(), 200u);
  EXPECT_EQ(model.total_numel, 200u * (1u << 18));
  EXPECT_EQ(make_model("small1000").total_numel, make_model("uniform:1000x4K").total_numel);
  for (const char* bad : {"uniform:", "uniform:0x4K", "uniform:10x3", "uniform:10x", "uniform:x4K",
                          "uniform:2x16G", "vgg16"}) {
    EXPECT_THROW(make_model(bad), ringfuse::Error) << bad;
  }
}

}  // namespace
}  // namespace ringfuse::perf
