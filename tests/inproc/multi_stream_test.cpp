// Several TCP connections per peer (RINGFUSE_SOCKETS_PER_PEER): every collective over 1, 2 and 4
// connections, on messages large enough to be cut into pieces (512 KiB and more) whose sizes
// do not divide by the connection count, the world size or the 256 KiB piece, so short last
// pieces, pieces arriving out of order and uneven ring blocks all occur.
#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "algo/partition.hpp"
#include "allreduce_check.hpp"
#include "transport/tcp_mesh.hpp"

namespace ringfuse::inproc {
namespace {

// Below, at and around the smallest message cut into pieces (two of 256 KiB), and well above it.
const std::vector<std::size_t> kMessageBytes{1,       (std::size_t{512} << 10) - 1,
                                             std::size_t{512} << 10, (std::size_t{512} << 10) + 1,
                                             (std::size_t{1} << 20) + 13, 3 * (std::size_t{1} << 20) + 4097};

std::vector<WorldParam> striped_worlds() {
  std::vector<WorldParam> list;
  for (int streams : {1, 2, 4}) {
    for (int size : {2, 3}) list.push_back({size, TransportKind::tcp, streams});
  }
  return list;
}

class MultiStream : public ::testing::TestWithParam<WorldParam> {};

TEST(PieceLayout, FramesOnlyLargeMessagesWithSeveralConnections) {
  for (int streams : {1, 2, 3, 4, 16}) {
    for (std::size_t bytes : kMessageBytes) {
      const transport::PieceLayout layout(bytes, streams);
      EXPECT_EQ(layout.framed, streams > 1 && bytes >= (std::size_t{512} << 10)) << bytes;
      ASSERT_GE(layout.lanes, 1u);
      ASSERT_LE(layout.lanes, static_cast<std::size_t>(streams));
      if (!layout.framed) {
        EXPECT_EQ(layout.lanes, 1u) << bytes << " over " << streams;
      }
      std::size_t covered = 0;
      for (std::size_t i = 0; i < layout.pieces; ++i) {
        EXPECT_EQ(layout.begin(i), covered) << "piece " << i << " of " << bytes;
        EXPECT_EQ(layout.begin(i) % 4096, 0u) << "piece " << i << " of " << bytes;
        EXPECT_GT(layout.length(i), 0u) << "empty piece " << i << " of " << bytes;
        covered += layout.length(i);
      }
      EXPECT_EQ(covered, bytes) << bytes << " over " << streams;
    }
  }
  std::array<std::byte, transport::kPieceHeaderBytes> header{};
  for (std::uint64_t offset : {std::uint64_t{0}, std::uint64_t{3} << 18, transport::kEndOfPieces}) {
    transport::encode_piece_header(offset, header.data());
    EXPECT_EQ(transport::decode_piece_header(header.data()), offset);
  }
}

// Ring-shaped send_recv: the bytes arrive intact, and the progress callback reports a growing
// prefix that ends at the whole message, however the pieces arrive.
TEST_P(MultiStream, SendRecvDeliversEveryByteAndReportsAPrefix) {
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport, algo::Workspace&) {
    const int n = rank.size();
    const int right = algo::wrap(rank.rank() + 1, n);
    const int left = algo::wrap(rank.rank() - 1, n);
    for (std::size_t bytes : kMessageBytes) {
      std::vector<std::byte> out(bytes);
      std::vector<std::byte> in(bytes);
      for (std::size_t i = 0; i < bytes; ++i) out[i] = pattern(rank.rank(), bytes, i);
      std::vector<std::size_t> reports;
      transport.send_recv(right, out.data(), bytes, left, in.data(), bytes,
                          [&](std::size_t arrived) { reports.push_back(arrived); });
      const auto difference = first_byte_difference(
          in.data(), bytes, [&](std::size_t i) { return pattern(left, bytes, i); });
      rank.expect(!difference, fmt::format("{} bytes: {}", bytes, difference.value_or("")));
      rank.expect(!reports.empty() && reports.back() == bytes &&
                      std::is_sorted(reports.begin(), reports.end()),
                  fmt::format("{} bytes: progress reports {} do not grow to the whole message",
                              bytes, fmt::join(reports, ",")));
    }
  });
}

TEST_P(MultiStream, EveryAllreduceAlgorithmMatchesTheReference) {
  const int n = GetParam().size;
  // f64 and i8 and bf16 make the last piece of many messages short, and the byte counts odd.
  const AllreduceCases cases{{DataType::f32, DataType::f64, DataType::bf16, DataType::i8},
                             {ReduceOp::sum, ReduceOp::max},
                             {13, static_cast<std::size_t>(n) * 200'003 + 1, 1'000'003},
                             /*seed=*/3};
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport,
                               algo::Workspace& workspace) {
    for (Algorithm algorithm : {Algorithm::ring, Algorithm::tree, Algorithm::rhd}) {
      check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
        algo::allreduce(algorithm, transport, workspace, buffer);
      });
    }
  });
}

// send_recv_reduce and send_recv keep their sends at most one piece per connection ahead of
// their receives until everything has arrived (TcpMesh::exchange's window). Here rank 0 sends 3 MiB
// to its right while every other send, and so rank 0's receive, is a few elements: rank 0
// must send the rest once its short receive is complete, or the ring stalls. Each rank
// reduces what it receives into its own values, checked element by element.
TEST_P(MultiStream, SendsRunFarPastAShortReceive) {
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport,
                               algo::Workspace& workspace) {
    const int n = rank.size();
    const int me = rank.rank();
    const int right = algo::wrap(me + 1, n);
    const int left = algo::wrap(me - 1, n);
    const auto count_sent_by = [](int r) {
      return r == 0 ? 3 * (std::size_t{1} << 20) / sizeof(float) + 5 : std::size_t{7};
    };
    const auto value = [](int r, std::size_t i) { return static_cast<float>((r + 1) * (i % 1000)); };
    std::vector<float> out(count_sent_by(me));
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = value(me, i);
    const std::size_t count = count_sent_by(left);
    std::vector<float> dst(count);
    for (std::size_t i = 0; i < count; ++i) dst[i] = static_cast<float>(i % 7);
    transport.send_recv_reduce(
        right, out.data(), out.size() * sizeof(float), left, dst.data(), count, DataType::f32,
        ReduceOp::sum,
        [&](std::size_t bytes) { return workspace.get(algo::Workspace::kReceive, bytes); });
    std::size_t wrong = count;
    for (std::size_t i = 0; i < count && wrong == count; ++i) {
      if (dst[i] != static_cast<float>(i % 7) + value(left, i)) wrong = i;
    }
    rank.expect(wrong == count, fmt::format("{} elements from rank {}: element {} is {}", count,
                                            left, wrong, wrong < count ? dst[wrong] : 0.0f));
    // The same shape through send_recv, which keeps the same window.
    std::vector<float> in(count);
    transport.send_recv(right, out.data(), out.size() * sizeof(float), left, in.data(),
                        count * sizeof(float));
    std::size_t wrong_copy = count;
    for (std::size_t i = 0; i < count && wrong_copy == count; ++i) {
      if (in[i] != value(left, i)) wrong_copy = i;
    }
    rank.expect(wrong_copy == count, fmt::format("send_recv of {} elements from rank {}: element "
                                                 "{} differs", count, left, wrong_copy));
  });
}

TEST_P(MultiStream, BroadcastAllgatherAndAlltoallDeliverEveryBlock) {
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport, algo::Workspace&) {
    const int n = rank.size();
    const int me = rank.rank();
    for (std::size_t bytes : {(std::size_t{1} << 20) + 13, 3 * (std::size_t{1} << 20) + 4097}) {
      for (int root : {0, n - 1}) {
        GuardedBuffer buffer(bytes, misalignment(DataType::u8, root == 0, me, bytes));
        for (std::size_t i = 0; i < bytes; ++i) buffer.data()[i] = pattern(me, 0, i);
        algo::broadcast(transport, buffer.data(), bytes, root);
        const auto difference = first_byte_difference(
            buffer.data(), bytes, [&](std::size_t i) { return pattern(root, 0, i); });
        rank.expect(!difference && buffer.guards_intact(),
                    fmt::format("broadcast of {} bytes from {}: {}", bytes, root,
                                difference.value_or("wrote outside the buffer")));
      }
    }
    // All-gather of uneven f64 blocks, each large enough to be striped.
    std::vector<std::size_t> counts;
    for (int k = 0; k < n; ++k) counts.push_back(131'071 + static_cast<std::size_t>(k) * 4099);
    const auto blocks = algo::blocks_from_counts(counts);
    const std::size_t total = blocks.back().offset + blocks.back().count;
    std::vector<std::byte> gathered(total * 8);
    const auto owned = [&](int r) { return algo::wrap(r + 1, n); };  // shift 0
    for (std::size_t i = 0; i < blocks[owned(me)].count * 8; ++i) {
      gathered[blocks[owned(me)].offset * 8 + i] = pattern(owned(me), 1, i);
    }
    algo::ring_allgather(transport, gathered.data(), 8, blocks, 0);
    for (int k = 0; k < n; ++k) {
      const auto difference =
          first_byte_difference(gathered.data() + blocks[k].offset * 8, blocks[k].count * 8,
                                [&](std::size_t i) { return pattern(k, 1, i); });
      rank.expect(!difference, fmt::format("all-gather block {}: {}", k, difference.value_or("")));
    }
    // Pairwise all-to-all: a different, odd, striped size for every pair.
    std::vector<std::size_t> send_counts, recv_counts;
    const auto block_bytes = [](int from, int to) {
      return std::size_t{600'001} + static_cast<std::size_t>(from * 7 + to * 4099);
    };
    for (int peer = 0; peer < n; ++peer) {
      send_counts.push_back(block_bytes(me, peer));
      recv_counts.push_back(block_bytes(peer, me));
    }
    const auto send_blocks = algo::blocks_from_counts(send_counts);
    const auto recv_blocks = algo::blocks_from_counts(recv_counts);
    std::vector<std::byte> send(send_blocks.back().offset + send_blocks.back().count);
    std::vector<std::byte> recv(recv_blocks.back().offset + recv_blocks.back().count);
    for (int to = 0; to < n; ++to) {
      for (std::size_t i = 0; i < send_counts[to]; ++i) {
        send[send_blocks[to].offset + i] = pattern(me, to, i);
      }
    }
    algo::alltoallv(transport, send.data(), send_blocks, recv.data(), recv_blocks, 1);
    for (int from = 0; from < n; ++from) {
      const auto difference =
          first_byte_difference(recv.data() + recv_blocks[from].offset, recv_counts[from],
                                [&](std::size_t i) { return pattern(from, me, i); });
      rank.expect(!difference,
                  fmt::format("all-to-all block from {}: {}", from, difference.value_or("")));
    }
    algo::barrier(transport);
  });
}

// One slow connection must not hold back every step (issue 17): rank 0's third connection to
// its right-hand neighbour gets a tiny send buffer, so each system call moves a few KiB on it
// and a whole piece on the others. Pieces go to whichever connection has room, so that
// connection carries fewer bytes than each of the others (fixed stripes gave every connection
// the same share), while every algorithm's sums stay exact on odd sizes and send_recv reports
// only a prefix that has fully arrived.
class MultiStreamSlowConnection : public ::testing::TestWithParam<WorldParam> {};

TEST_P(MultiStreamSlowConnection, CarriesFewerBytesAndTheSumsStayExact) {
  constexpr int kSlow = 2;
  run_in_world(GetParam(), [&](Rank& rank, transport::Transport& transport,
                               algo::Workspace& workspace) {
    auto& mesh = dynamic_cast<transport::TcpMesh&>(transport);
    const int n = rank.size();
    const int me = rank.rank();
    const int right = algo::wrap(me + 1, n);
    const int left = algo::wrap(me - 1, n);
    if (me == 0) {
      const int tiny = 4096;
      const int fd = mesh.connection_fd(right, kSlow);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &tiny, sizeof(tiny)), 0);
    }
    const AllreduceCases cases{{DataType::f32, DataType::f64, DataType::bf16, DataType::i8},
                               {ReduceOp::sum},
                               {static_cast<std::size_t>(n) * 200'003 + 1, 3'000'017},
                               /*seed=*/5};
    for (Algorithm algorithm : {Algorithm::ring, Algorithm::tree, Algorithm::rhd}) {
      check_allreduce(rank, cases, [&](const algo::ReduceBuffer& buffer) {
        algo::allreduce(algorithm, transport, workspace, buffer);
      });
    }
    // Ring-shaped send_recv of an odd size: every byte in place, and progress reports that
    // grow to the whole message and never run past what has arrived.
    const std::size_t bytes = (std::size_t{8} << 20) + 4099;
    std::vector<std::byte> out(bytes);
    std::vector<std::byte> in(bytes, std::byte{0});
    for (std::size_t i = 0; i < bytes; ++i) out[i] = pattern(me, bytes, i);
    std::vector<std::size_t> reports;
    std::size_t premature = bytes;  // the first byte a report claimed before it had arrived
    transport.send_recv(right, out.data(), bytes, left, in.data(), bytes, [&](std::size_t arrived) {
      reports.push_back(arrived);
      for (std::size_t i = 0; i < arrived && premature == bytes; ++i) {
        if (in[i] != pattern(left, bytes, i)) premature = i;
      }
    });
    const auto difference = first_byte_difference(
        in.data(), bytes, [&](std::size_t i) { return pattern(left, bytes, i); });
    rank.expect(!difference, fmt::format("send_recv of {} bytes: {}", bytes,
                                         difference.value_or("")));
    rank.expect(premature == bytes,
                fmt::format("send_recv reported byte {} as arrived before it had", premature));
    rank.expect(!reports.empty() && reports.back() == bytes &&
                    std::is_sorted(reports.begin(), reports.end()),
                fmt::format("progress reports {} do not grow to the whole message",
                            fmt::join(reports, ",")));
    if (me != 0) return;
    std::vector<std::uint64_t> carried;
    for (int stream = 0; stream < GetParam().streams; ++stream) {
      carried.push_back(mesh.bytes_sent(right, stream));
    }
    std::uint64_t fewest_of_the_others = ~std::uint64_t{0};
    for (int stream = 0; stream < GetParam().streams; ++stream) {
      if (stream != kSlow) fewest_of_the_others = std::min(fewest_of_the_others, carried[stream]);
    }
    rank.expect(carried[kSlow] < fewest_of_the_others,
                fmt::format("bytes sent to rank {} by connection: {}; connection {} (slowed) "
                            "carried no fewer than each of the others",
                            right, fmt::join(carried, ", "), kSlow + 1));
  });
}

INSTANTIATE_TEST_SUITE_P(InProcess, MultiStreamSlowConnection,
                         ::testing::Values(WorldParam{2, TransportKind::tcp, 4},
                                           WorldParam{3, TransportKind::tcp, 4}),
                         world_name);

INSTANTIATE_TEST_SUITE_P(InProcess, MultiStream, ::testing::ValuesIn(striped_worlds()),
                         world_name);

}  // namespace
}  // namespace ringfuse::inproc
