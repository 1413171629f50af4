// The engine thread's table of outstanding collectives (comm/src/engine/outstanding.hpp): a
// window of slots indexed by sequence number. Collectives complete out of order (a fused group
// after a single one, an error in the middle) and a join() skips numbers; the table must find
// each by its number, complete each Work once, and shrink only from the front.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "engine/outstanding.hpp"

namespace {

using ringfuse::engine::Outstanding;
using ringfuse::engine::Request;
using ringfuse::engine::WorkState;

std::shared_ptr<WorkState> add(Outstanding& table, std::uint64_t seq, const std::string& name) {
  Request request;
  request.seq = seq;
  request.fp.name = name;
  request.work = std::make_shared<WorkState>();
  auto work = request.work;
  table.add(std::move(request));
  return work;
}

TEST(Outstanding, FindsByNumberAcrossGapsAndOutOfOrderCompletion) {
  Outstanding table;
  EXPECT_TRUE(table.empty());
  const auto w1 = add(table, 1, "a");
  const auto w2 = add(table, 2, "b");
  const auto w5 = add(table, 5, "e");  // a join() took 3 and 4
  EXPECT_FALSE(table.empty());
  EXPECT_EQ(table.at(5).fp.name, "e");
  EXPECT_FALSE(table.contains(3));
  EXPECT_FALSE(table.contains(0));  // a joined rank's placeholder number
  EXPECT_FALSE(table.contains(6));
  EXPECT_THROW((void)table.at(4), std::out_of_range);

  table.complete(2, nullptr);  // the middle one first
  EXPECT_TRUE(w2->is_done());
  EXPECT_FALSE(w1->is_done());
  EXPECT_FALSE(table.contains(2));
  ASSERT_NE(table.find(1), nullptr);
  EXPECT_EQ(table.find(1)->fp.name, "a");
  table.complete(2, nullptr);  // twice: nothing
  table.complete(1, nullptr);
  EXPECT_TRUE(w1->is_done());
  EXPECT_EQ(table.at(5).fp.name, "e");
  EXPECT_EQ(table.seq_named("e"), 5u);
  EXPECT_EQ(table.seq_named("a"), std::nullopt);

  const auto w6 = add(table, 6, "f");
  table.complete(6, nullptr);
  EXPECT_TRUE(w6->is_done());
  EXPECT_FALSE(w5->is_done());
  table.complete(5, nullptr);
  EXPECT_TRUE(w5->is_done());
  EXPECT_TRUE(table.empty());

  // Numbering goes on from wherever it is after the table emptied.
  const auto w9 = add(table, 9, "i");
  EXPECT_EQ(table.at(9).fp.name, "i");
  EXPECT_FALSE(table.contains(5));
}

TEST(Outstanding, ATableThatNeverEmptiesKeepsFindingEveryRequest) {
  Outstanding table;
  std::vector<std::shared_ptr<WorkState>> works;
  std::uint64_t next = 1;
  std::uint64_t oldest = 1;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 30; ++i, ++next) works.push_back(add(table, next, std::to_string(next)));
    // Complete all but the newest 10, newest first, holding a pointer to the oldest left.
    const Request* keep = table.find(next - 10);
    ASSERT_NE(keep, nullptr);
    for (auto seq = next - 11; seq + 1 > oldest; --seq) table.complete(seq, nullptr);
    oldest = next - 10;
    EXPECT_EQ(keep->fp.name, std::to_string(next - 10));  // still valid after completions
    for (auto seq = oldest; seq < next; ++seq) {
      ASSERT_NE(table.find(seq), nullptr) << seq;
      EXPECT_EQ(table.find(seq)->fp.name, std::to_string(seq));
    }
    EXPECT_FALSE(table.contains(oldest - 1));
  }
  for (std::uint64_t seq = 1; seq < oldest; ++seq) EXPECT_TRUE(works[seq - 1]->is_done()) << seq;
  for (auto seq = oldest; seq < next; ++seq) EXPECT_FALSE(works[seq - 1]->is_done()) << seq;
}

TEST(Outstanding, SeqsByNameListsThePendingRequestsOnly) {
  Outstanding table;
  add(table, 4, "w");
  add(table, 5, "b");
  add(table, 7, "a");
  table.complete(5, nullptr);
  const auto seqs = table.seqs_by_name();
  EXPECT_EQ(seqs.size(), 2u);
  EXPECT_EQ(seqs.at("w"), 4u);
  EXPECT_EQ(seqs.at("a"), 7u);
  EXPECT_EQ(seqs.count("b"), 0u);
}

TEST(Outstanding, FailAllCompletesEveryWorkWithTheError) {
  Outstanding table;
  std::vector<std::shared_ptr<WorkState>> works;
  for (std::uint64_t seq = 3; seq < 3 + 100; seq += 3) works.push_back(add(table, seq, "t"));
  table.complete(6, nullptr);
  const ringfuse::Error error(ringfuse::ErrorKind::peer_failure, "rank 1: gone");
  table.fail_all(error);
  EXPECT_TRUE(table.empty());
  for (std::size_t i = 0; i < works.size(); ++i) {
    ASSERT_TRUE(works[i]->is_done()) << i;
    if (i == 1) {
      EXPECT_FALSE(works[i]->error.has_value());
    } else {
      ASSERT_TRUE(works[i]->error.has_value()) << i;
      EXPECT_STREQ(works[i]->error->what(), "rank 1: gone");
    }
  }
}

// A cycle's batch goes into an empty table whole (issue 18), and the batch comes back
// holding the completed requests, whose name memory the queue fills again.
TEST(Outstanding, AdoptsAConsecutiveBatchIntoAnEmptyTableAndHandsBackTheOldRequests) {
  Outstanding table;
  const auto batch_of = [](std::uint64_t first, std::size_t count) {
    std::vector<Request> batch(count);
    for (std::size_t i = 0; i < count; ++i) {
      batch[i].seq = first + i;
      batch[i].fp.name = "a.name.longer.than.the.inline.buffer." + std::to_string(first + i);
      batch[i].work = std::make_shared<WorkState>();
    }
    return batch;
  };
  auto first = batch_of(1, 3);
  const auto w2 = first[1].work;
  const char* name2 = first[1].fp.name.data();
  ASSERT_TRUE(table.adopt(first, first.size()));
  EXPECT_EQ(table.at(2).fp.name, "a.name.longer.than.the.inline.buffer.2");
  EXPECT_FALSE(table.contains(4));

  auto second = batch_of(4, 2);
  EXPECT_FALSE(table.adopt(second, second.size())) << "the table is not empty";
  EXPECT_EQ(second.size(), 2u);  // untouched
  for (std::uint64_t seq = 1; seq <= 3; ++seq) table.complete(seq, nullptr);
  EXPECT_TRUE(w2->is_done());
  ASSERT_TRUE(table.adopt(second, second.size()));
  EXPECT_EQ(table.at(5).fp.name, "a.name.longer.than.the.inline.buffer.5");
  EXPECT_FALSE(table.contains(2));
  // The completed requests came back, with their names' memory.
  ASSERT_EQ(second.size(), 3u);
  EXPECT_EQ(second[1].fp.name.data(), name2);
  EXPECT_EQ(second[1].work, nullptr);

  auto gap = batch_of(10, 2);
  gap[1].seq = 12;
  table.complete(4, nullptr);
  table.complete(5, nullptr);
  EXPECT_FALSE(table.adopt(gap, gap.size())) << "numbers with a gap go one by one";
  table.add(gap[0]);
  table.add(gap[1]);
  EXPECT_TRUE(table.contains(10));
  EXPECT_FALSE(table.contains(11));
  EXPECT_TRUE(table.contains(12));
}

}  // namespace
