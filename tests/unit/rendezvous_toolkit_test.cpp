// The rendezvous toolkit every set-up uses: PrefixStore (namespaces, nested) and all_gather
// (each rank's value, in rank order; a timeout names the ranks that never published), over a
// real TCP store with ranks as threads.
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <string>
#include <vector>

#include "rendezvous/all_gather.hpp"
#include "rendezvous/prefix_store.hpp"
#include "rendezvous/rank_exits.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "transport/group_gather.hpp"

namespace ringfuse::rendezvous {
namespace {

using namespace std::chrono_literals;

TEST(PrefixStore, KeysLandUnderTheNestedPrefixAndNowhereElse) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStoreClient client("127.0.0.1", server.port(), 5s);
  PrefixStore job(client, "job/");
  PrefixStore channel(job, "main/");
  channel.set("k", "v");
  EXPECT_EQ(client.get("job/main/k", 1s), "v");
  EXPECT_EQ(job.get("main/k", 1s), "v");
  EXPECT_TRUE(channel.check({"k"}));
  EXPECT_FALSE(client.check({"k"}));
  EXPECT_EQ(channel.add("n", 2), 2);
  EXPECT_EQ(client.add("job/main/n", 1), 3);
  channel.wait({"k", "n"}, 1s);
  EXPECT_TRUE(channel.remove("k"));
  EXPECT_FALSE(client.check({"job/main/k"}));
  try {
    channel.get("missing", 50ms);
    FAIL() << "expected a timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    EXPECT_NE(std::string(e.what()).find("job/main/missing"), std::string::npos) << e.what();
  }
}

TEST(AllGather, EveryRankGetsEveryValueInRankOrder) {
  constexpr int kSize = 5;
  TcpStoreServer server("127.0.0.1", 0);
  std::vector<std::unique_ptr<TcpStoreClient>> clients;
  for (int r = 0; r < kSize; ++r) {
    clients.push_back(std::make_unique<TcpStoreClient>("127.0.0.1", server.port(), 5s));
  }
  std::vector<std::future<std::vector<std::string>>> results;
  for (int r = kSize - 1; r >= 0; --r) {  // the last rank first: order of arrival is not rank order
    results.push_back(std::async(std::launch::async, [&, r] {
      PrefixStore world(*clients[r], "w/");
      return all_gather(world, "addr", "value-" + std::to_string(r), r, kSize, 10s);
    }));
  }
  const std::vector<std::string> expected{"value-0", "value-1", "value-2", "value-3", "value-4"};
  for (auto& result : results) EXPECT_EQ(result.get(), expected);
  EXPECT_EQ(clients[0]->get("w/addr/3", 1s), "value-3");
}

TEST(AllGather, TimeoutNamesTheRanksThatNeverPublished) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStoreClient client("127.0.0.1", server.port(), 5s);
  client.set("w/addr/1", "present");
  try {
    PrefixStore world(client, "w/");
    all_gather(world, "addr", "mine", 0, 4, 100ms);
    FAIL() << "expected a timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    const std::string what = e.what();
    EXPECT_NE(what.find("w/addr/2"), std::string::npos) << what;
    EXPECT_NE(what.find("w/addr/3"), std::string::npos) << what;
    EXPECT_EQ(what.find("w/addr/1"), std::string::npos) << what;
  }
}

TEST(GatherFirst, ReturnsTheLowerRanksValuesWithoutWaitingForTheHigherOnes) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStoreClient client("127.0.0.1", server.port(), 5s);
  EXPECT_TRUE(gather_first(client, "addr", "zero", 0, 0, 100ms).empty());  // rank 0: nobody
  EXPECT_EQ(client.get("addr/0", 1s), "zero");
  EXPECT_EQ(gather_first(client, "addr", "one", 1, 1, 1s), std::vector<std::string>{"zero"});
  // Rank 2 needs ranks 0 and 1 only; rank 3 never comes.
  EXPECT_EQ(gather_first(client, "addr", "two", 2, 2, 1s),
            (std::vector<std::string>{"zero", "one"}));
  EXPECT_TRUE(client.check({"addr/2"}));
}

TEST(Broadcast, EveryRankGetsTheRootsValue) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStoreClient root("127.0.0.1", server.port(), 5s);
  TcpStoreClient other("127.0.0.1", server.port(), 5s);
  auto received = std::async(std::launch::async, [&] {
    return broadcast(other, "id", "ignored", 1, 0, 10s);
  });
  EXPECT_EQ(broadcast(root, "id", "the-id", 0, 0, 10s), "the-id");
  EXPECT_EQ(received.get(), "the-id");
}

// The launcher records a rank's end in the store it hosts (ringfuse-run, rank_exits.hpp); a
// group waiting for that rank stops at once, naming it by its global rank, while a rank that
// published before it ended is not waited for and not blamed.
TEST(GatherInGroup, APeerWhoseEndIsRecordedEndsTheWaitAtOnce) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStoreClient client("127.0.0.1", server.port(), 5s);
  PrefixStore world(client, "w/");
  const transport::GlobalRanks global({4, 7, 9});
  client.set("w/addr/1", "seven");
  for (const int ended : {7, 9}) {
    record_rank_exit(server, ended, "exited with status 0 (pid 1 on h)");
  }
  const auto started = std::chrono::steady_clock::now();
  try {
    transport::all_gather_in_group(world, "addr", "four", 0, 3, 30s, global, "set-up");
    FAIL() << "expected the wait to end";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::peer_failure) << e.what();
    EXPECT_EQ(e.rank(), 4);
    EXPECT_EQ(e.peer(), 9);
    EXPECT_NE(std::string(e.what()).find(
                  "set-up: rank 9 exited with status 0 (pid 1 on h) before it joined"),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);

  // The same group once position 2 (rank 9) has published after all: nobody is missing.
  client.set("w/addr/2", "nine");
  EXPECT_EQ(transport::all_gather_in_group(world, "addr", "four", 0, 3, 30s, global, "set-up"),
            (std::vector<std::string>{"four", "seven", "nine"}));
}

TEST(GatherInGroup, WithNoEndRecordedThePeersAreWaitedForUntilTheTimeout) {
  TcpStoreServer server("127.0.0.1", 0);
  TcpStoreClient client("127.0.0.1", server.port(), 5s);
  const transport::GlobalRanks global({0, 1});
  const auto started = std::chrono::steady_clock::now();
  try {
    transport::all_gather_in_group(client, "addr", "zero", 0, 2, 1200ms, global, "set-up");
    FAIL() << "expected a timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::timeout) << e.what();
    EXPECT_NE(std::string(e.what()).find("rank 1 did not arrive within 1 s"), std::string::npos)
        << e.what();
  }
  EXPECT_GE(std::chrono::steady_clock::now() - started, 1200ms);
}

}  // namespace
}  // namespace ringfuse::rendezvous
