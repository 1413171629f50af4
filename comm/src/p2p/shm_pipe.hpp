// A one-way shared-memory pipe between the two ends of one point-to-point connection, set up
// over that (authenticated) connection right after its handshake: the connector creates a
// segment holding a random token and a byte ring, sends its name and the token, and the
// acceptor maps it and reads the token back (the proof of shared_memory_proof.hpp, for this
// pair only); it answers yes or no, and the connector unlinks the name either way. Without a
// yes (another host, separate /dev/shm, /dev/shm full) the pair stays on TCP.
//
// Messages then travel through the ring as a byte stream (header and payload, copied in by
// the sender and straight out into the receive buffer by the receiver), and the TCP connection
// stays open beside it as liveness (EOF names a dead peer) and as a doorbell: a side about to
// sleep in poll() sets its flag in the segment, and the other side, after progress, sends one
// byte over TCP when the flag is set, so nobody spins while idle. A small reverse ring
// carries the reader's control frames back (write_back/read_back).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <cstdint>
#include <functional>
#include <string>

#include "transport/shm_ring.hpp"
#include "transport/shm_segment.hpp"
#include "transport/socket.hpp"

namespace ringfuse::p2p {

class ShmPipe {
 public:
  /// The shared header of the segment; the ring's bytes follow it.
  struct Control;

  /// `peer_pid`: the other side's process: the writer's, whose memory the reader may read
  /// directly with process_vm_readv when `single_copy` (proven at set-up); the reader's on the
  /// writer's side, for copy_together.
  ShmPipe(transport::shm::Segment segment, std::size_t ring_bytes, bool writer,
          bool single_copy = false, int peer_pid = 0);
  ~ShmPipe();

  /// Both sides proved at set-up that the reader can read the writer's memory (Linux cross-
  /// memory attach): large messages then go as an address, read once straight into the
  /// receive buffer, instead of being copied through the ring twice.
  bool single_copy() const { return single_copy_; }
  /// Reader: copies `bytes` at `address` in the writer's memory into `dst`. Throws
  /// std::system_error.
  void read_remote(std::byte* dst, std::uint64_t address, std::size_t bytes) const;
  /// Both sides proved they can read and write each other's memory: the reader of a large
  /// message lets the writer copy pieces of it too (copy_together/help_copy), so two cores
  /// copy one message.
  bool copy_together() const { return copy_together_; }
  void set_copy_together(bool on) { copy_together_ = on && single_copy_; }
  /// Reader: copies `bytes` at `address` in the writer's memory into `dst`, message number
  /// `message` (1, 2, ... in stream order of the single-copy messages), sharing the pieces
  /// with the writer's help_copy(); `wake` rings the writer's doorbell once the message is
  /// published; `alive` says whether the writer still is, while its last pieces are awaited.
  /// Throws std::system_error, or std::runtime_error past `deadline` or when it died.
  void copy_together(std::byte* dst, std::uint64_t address, std::size_t bytes,
                     std::uint64_t message, const std::function<void()>& wake,
                     const std::function<bool()>& alive,
                     std::chrono::steady_clock::time_point deadline);
  /// Writer: copies pieces of message `message` (whose payload is `src`) into the reader's
  /// buffer while the reader publishes it; true when it copied any. Throws std::system_error.
  bool help_copy(std::uint64_t message, const std::byte* src);
  /// Reader: one more message read with read_remote(); writer: how many were.
  void count_remote_done();
  std::uint64_t remote_done() const;

  /// Writer: copies what fits of `bytes` into the ring, returns how much.
  std::size_t write(const std::byte* src, std::size_t bytes);
  /// Reader: copies up to `bytes` out of the ring into `dst`, returns how much.
  std::size_t read(std::byte* dst, std::size_t bytes);
  bool readable() { return reader_.has_data(); }
  /// The reverse direction, for small control frames: the reader copies what fits of `bytes`
  /// (returns how much), the writer reads up to `bytes` of them (returns how much).
  std::size_t write_back(const std::byte* src, std::size_t bytes);
  std::size_t read_back(std::byte* dst, std::size_t bytes);

  /// The side that waits announces it before sleeping in poll() (then re-checks the ring);
  /// the other side calls needs_wake_*() after progress and sends a doorbell byte when true.
  void set_reader_sleeping(bool sleeping);
  void set_writer_sleeping(bool sleeping);
  bool reader_asleep() const;
  bool writer_asleep() const;

 private:
  transport::shm::Segment segment_;
  Control* control_;
  transport::shm::RingWriter writer_;
  transport::shm::RingReader reader_;
  transport::shm::RingWriter back_writer_;  // reader's side
  transport::shm::RingReader back_reader_;  // writer's side
  bool single_copy_;
  int peer_pid_;  // the other side's process
  bool copy_together_ = false;
};

/// The connector's side, after its proof: offers a pipe of `ring_bytes` named under `scope`
/// (`enabled` false, or a segment that cannot be made: offers none) and waits for the answer
/// until `deadline`. Null when the pair stays on TCP.
std::unique_ptr<ShmPipe> offer_pipe(const transport::Socket& socket, bool enabled,
                                    const std::string& scope, std::size_t ring_bytes,
                                    std::chrono::steady_clock::time_point deadline);

/// The acceptor's side, after the connector's proof: reads the offer, maps and checks the
/// segment, answers. Null when the pair stays on TCP. Throws std::runtime_error on a broken
/// or late offer (the connection is then refused).
std::unique_ptr<ShmPipe> accept_pipe(const transport::Socket& socket,
                                     std::chrono::steady_clock::time_point deadline);

}  // namespace ringfuse::p2p
