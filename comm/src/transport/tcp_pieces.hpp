// How TcpMesh cuts a message over several connections to one peer (RINGFUSE_SOCKETS_PER_PEER).
//
// A message of two pieces or more (512 KiB), with more than one connection, travels as
// fixed-size pieces that the sender hands to whichever connection has room (tcp_mesh.cpp:
// under 64 KiB of what it was given unacknowledged), so a slow connection (a congested path, a
// flow hashed onto a busier queue) carries fewer of them instead of holding back every step
// with a fixed share. Each piece is preceded by a header that holds its offset in the message;
// each connection the message uses ends its part with an end header, so the receiver knows
// where that connection's part ends without knowing how many pieces it got, and never reads
// into the next message. Both sides derive the layout from the byte count and the job's
// connection count alone, so they agree without negotiating. Smaller messages, and every
// message with one connection, go whole on the first connection with no header at all.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ringfuse::transport {

inline constexpr int kMaxStreamsPerPeer = 16;

/// Bytes of one piece: a multiple of every element size, so no element is split between two
/// pieces, and small enough to be reduced while it is in cache.
inline constexpr std::size_t kPieceBytes = std::size_t{256} << 10;

/// The header before each piece: its offset in the message, little-endian.
inline constexpr std::size_t kPieceHeaderBytes = 8;
/// The header that ends a connection's part of a message.
inline constexpr std::uint64_t kEndOfPieces = ~std::uint64_t{0};

inline void encode_piece_header(std::uint64_t offset, std::byte* into) {
  for (std::size_t i = 0; i < kPieceHeaderBytes; ++i) {
    into[i] = static_cast<std::byte>((offset >> (8 * i)) & 0xff);
  }
}

inline std::uint64_t decode_piece_header(const std::byte* from) {
  std::uint64_t offset = 0;
  for (std::size_t i = 0; i < kPieceHeaderBytes; ++i) {
    offset |= std::uint64_t{std::to_integer<std::uint8_t>(from[i])} << (8 * i);
  }
  return offset;
}

/// The layout of one direction of one exchange with a peer.
struct PieceLayout {
  PieceLayout(std::size_t bytes_, int streams) : bytes(bytes_) {
    const auto wanted = static_cast<std::size_t>(std::clamp(streams, 1, kMaxStreamsPerPeer));
    pieces = (bytes + kPieceBytes - 1) / kPieceBytes;
    // Under two pieces a second flow gains less than the headers and system calls cost.
    framed = wanted > 1 && bytes >= 2 * kPieceBytes;
    lanes = framed ? std::min(wanted, pieces) : 1;
  }
  /// Where piece `index` begins, and how long it is (the last one may be shorter).
  std::size_t begin(std::size_t index) const { return std::min(index * kPieceBytes, bytes); }
  std::size_t length(std::size_t index) const {
    return std::min(begin(index) + kPieceBytes, bytes) - begin(index);
  }

  std::size_t bytes;
  std::size_t pieces;  // of kPieceBytes (the last one shorter)
  std::size_t lanes;   // connections the message uses: 1 when not framed
  bool framed;         // pieces with headers over `lanes` connections, else whole on the first
};

}  // namespace ringfuse::transport
