// Tagged point-to-point messages between the ranks of one world, on connections of their own
// (never those of a collective), made lazily and pairwise on first use, as NCCL does for p2p:
//  - every rank listens on one socket, advertised in the store at construction (one key),
//    and reads every peer's address then (one all-gather): sends never touch the store;
//  - the SENDER connects on its first message to a peer and both sides prove the job secret
//    (handshake.hpp); the receiver's acceptor thread answers at once (acceptor.hpp), so a
//    first send never waits for the receiver to enter a p2p call. Each connection carries
//    messages one way only (connector -> acceptor), so two ranks connecting to each other at
//    once never race;
//  - a pair that proves it shares memory then sends through a shared-memory pipe
//    (shm_pipe.hpp), large messages as an address the receiver reads once; the socket stays
//    as liveness and doorbell;
//  - a message is a small header (tag, bytes) and its payload; the receiver matches it to the
//    first posted receive that wants its source and tag, reading straight into that buffer,
//    or keeps it as unexpected until a receive asks for it, so different tags between one
//    pair never block each other and the order per (source, tag) is the send order;
//  - what a receiver keeps unexpected is bounded, as MPI bounds it with an eager limit and a
//    rendezvous: a message of up to eager_bytes goes whole (eagerly) while the sender holds
//    credit for it (unexpected_bytes per sender, returned by the receiver as it consumes
//    them); a larger one, or one beyond the credit, goes as an announcement (ready-to-send)
//    only, matched like a message, and its payload follows once the receiver has matched it
//    to a receive and said so (clear-to-send, on the connection's reverse direction, or its
//    pipe's reverse ring), straight
//    into that receive's buffer. Announcements are matched in arrival order like messages, so
//    the order per (source, tag) stays the send order.
// Operations are posted, then progressed together (progress()), so a group of sends and
// receives, or the engine's queue of them, never deadlocks on its own ordering. Not thread-
// safe: one thread posts and progresses.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rendezvous/store.hpp"
#include "ringfuse/context.hpp"
#include "p2p/acceptor.hpp"
#include "p2p/channel.hpp"
#include "p2p/shm_pipe.hpp"
#include "ringfuse/error.hpp"
#include "transport/global_ranks.hpp"
#include "transport/socket.hpp"

namespace ringfuse::p2p {

struct MessengerOptions {
  int rank = 0;
  int size = 1;
  std::string advertise_host = "127.0.0.1";  // where peers connect to this rank
  std::string job_id = "local";
  std::string secret;                      // RINGFUSE_JOB_SECRET: proven on every connection
  std::string key_prefix = "ringfuse/p2p/";  // store namespace of this messenger's addresses
  std::chrono::milliseconds connect_timeout{60'000};
  std::chrono::milliseconds op_timeout{300'000};  // longest wait of one op without progress
  std::chrono::milliseconds user_timeout{10'000};  // TCP_USER_TIMEOUT
  /// Offer each new connection a shared-memory pipe (taken when the pair proves it shares
  /// memory); false: TCP only (RINGFUSE_TRANSPORT=tcp).
  bool shared_memory = true;
  std::size_t pipe_bytes = std::size_t{4} << 20;  // each pipe's ring; a power of two
  /// On a pipe whose reader proved it can read the sender's memory: messages of at least
  /// this many bytes go as an address, read once into the receive buffer (the send completes
  /// when it has been read), instead of through the ring.
  std::size_t single_copy_min = std::size_t{256} << 10;
  /// Single-copy messages of at least this many bytes are copied by both sides at once when
  /// the sender proved it can also write the receiver's memory (ShmPipe::copy_together).
  std::size_t copy_together_min = std::size_t{1} << 20;
  /// How long a waiting rank spins on its pipes before it sleeps in poll(), when every rank
  /// of its host has a CPU of its own; when they outnumber their CPUs (agreed at
  /// construction) it yields a few times instead of spinning.
  std::chrono::microseconds spin{200};
  /// RINGFUSE_P2P_EAGER_BYTES: messages of up to this many bytes go whole, without waiting for
  /// their receive, while the sender has credit for them.
  std::size_t eager_bytes = std::size_t{64} << 10;
  /// RINGFUSE_P2P_UNEXPECTED_BYTES: the most payload bytes of one sender's eager messages this
  /// rank holds for no receive yet (the sender's credit); 0: every message waits for its
  /// receive.
  std::size_t unexpected_bytes = std::size_t{4} << 20;
  std::string purpose = "point-to-point";          // in error messages
  /// The global rank behind each rank of this world (a child Context's): errors and log lines
  /// name those, as every other message of a child does. Empty: ranks are global.
  transport::GlobalRanks global_ranks;
};

using OpId = std::uint64_t;

/// What a messenger holds for messages no receive has taken yet (peers' messages only: a
/// send to oneself is a copy kept until its receive).
struct MessengerStats {
  std::size_t unexpected_bytes = 0;     // payload bytes held now
  std::size_t unexpected_peak = 0;      // the most held at once since construction
  std::size_t unexpected_messages = 0;  // messages (or announcements of one) waiting now
  std::uint64_t eager_sends = 0;       // this rank's messages sent whole
  std::uint64_t rendezvous_sends = 0;  // this rank's messages announced, sent once matched
};

/// A posted operation that finished: its status (receives), or why it failed.
struct Completion {
  OpId id = 0;
  RecvStatus status;
  std::optional<Error> error;
};

class Messenger final : public Channel {
 public:
  /// Listens, publishes this rank's address under key_prefix + "addr/<rank>" in `store` and
  /// reads every peer's (collective: waits up to connect_timeout for every rank's messenger;
  /// `store` may be null only in a world of one, and is not used after construction).
  /// Connects nothing: connections are made by the first send to each peer.
  Messenger(rendezvous::Store* store, MessengerOptions options);
  /// Tells every peer it connected to that it leaves in order, so their receives report an
  /// orderly exit rather than a crash; then closes every connection.
  ~Messenger() override;
  Messenger(const Messenger&) = delete;
  Messenger& operator=(const Messenger&) = delete;

  int rank() const { return options_.rank; }
  /// This rank's, and `peer`'s, global rank: what messages name.
  int me() const { return options_.global_ranks(options_.rank); }
  int global(int peer) const { return options_.global_ranks(peer); }
  /// Who this rank is in a handshake (handshake.hpp), as acceptor and as connector.
  Identity identity() const {
    return Identity{options_.rank, options_.size, options_.job_id, options_.secret,
                    options_.purpose, options_.global_ranks};
  }
  int size() const { return options_.size; }

  /// Checks the arguments (throws invalid_argument naming them) and posts the op; nothing
  /// moves until progress().
  OpId post_send(const void* data, std::size_t bytes, int peer, int tag);
  OpId post_recv(void* data, std::size_t capacity_bytes, std::size_t element_bytes, int peer,
                 int tag);
  /// Withdraws a posted op that has not started moving bytes; returns whether it did.
  bool cancel(OpId id);

  /// Moves whatever can move, waiting at most `wait` for something to happen; appends the ops
  /// that finished (or failed: a dead peer, no progress for op_timeout, a message longer than
  /// its receive's buffer) to `done`.
  void progress(std::chrono::microseconds wait, std::vector<Completion>& done);
  /// Whether any op is posted and not yet completed.
  bool busy() const;
  const MessengerStats& stats() const { return stats_; }

  /// Blocking: posts `ops`, progresses until all are done, and returns the receives' statuses
  /// in order. On the first failure, withdraws what has not started, finishes what has (so
  /// the connections stay in step) and throws that failure.
  std::vector<RecvStatus> run(std::span<const P2POp> ops) override;
  const char* name() const override { return "native"; }

 private:
  struct Link;
  struct SendOp;
  struct RecvOp;
  struct Message;
  using Clock = std::chrono::steady_clock;

  Link& outgoing(int peer);
  void start_connect(int peer);
  void poll_once(std::chrono::microseconds wait);
  void progress_sends(int peer, std::vector<Completion>& done);
  /// `check_socket`: also look at the socket behind a pipe (doorbells, the peer's close).
  void read_incoming(int peer, std::vector<Completion>& done, bool check_socket);
  /// One pass over every connection; without `check_sockets`, only the pipes (spinning).
  void step(std::vector<Completion>& done, bool check_sockets);
  void set_sleeping(bool sleeping);
  bool has_pipes() const;
  static void ring_doorbell(const transport::Socket& socket);
  /// Reads the doorbell bytes waiting; false when the peer closed the connection.
  static bool drain_doorbells(const transport::Socket& socket);
  void on_header(int peer, std::vector<Completion>& done);
  /// Sender: picks eager (within credit) or an announcement for the op about to go first.
  void choose_protocol(int peer, SendOp& op, const Link& link);
  /// Sender: reads what came back on its connection to `peer` (credit, clear-to-send,
  /// doorbells); false when the peer closed it.
  bool read_control(int peer);
  /// Sender: reads the control frames in `peer`'s pipe's reverse ring.
  void read_back(int peer);
  void on_control(int peer);
  /// Receiver: queues a control frame to `peer` on the reverse direction (the socket's, or
  /// the pipe's reverse ring) and sends what it can of the queue at once.
  void send_control(int peer, std::uint32_t kind, std::uint64_t id);
  void flush_control(int peer);
  /// Receiver: `op`, matched to `peer`'s announcement `id`, waits for the payload; tells the
  /// sender to send it.
  void clear_to_send(int peer, std::unique_ptr<RecvOp> op, std::uint64_t id);
  /// Receiver: `bytes` of an eager message from `peer` left this rank's hands (a receive
  /// took them): the sender may use that credit again.
  void return_credit(int peer, std::size_t bytes);
  void finish_message(int peer, std::vector<Completion>& done);
  /// Matches complete unexpected messages against posted receives, in posting order.
  void match_unexpected(std::vector<Completion>& done);
  void fail_peer(int peer, const std::string& why, std::vector<Completion>& done);
  void check_deadlines(std::vector<Completion>& done);
  bool recv_wants(const RecvOp& op, int source, int tag) const;
  Error truncation(const RecvOp& op, int source, int tag, std::size_t bytes) const;
  std::string describe_recv(const RecvOp& op) const;

  MessengerOptions options_;
  std::vector<std::string> addresses_;  // by peer: "host:port" of its listener
  bool oversubscribed_ = false;  // this host's ranks outnumber their CPUs: yield, never spin
  std::unique_ptr<Acceptor> acceptor_;  // null in a world of one
  std::vector<std::unique_ptr<Link>> out_;  // by peer: connections this rank made (sends)
  std::vector<std::unique_ptr<Link>> in_;   // by peer: connections peers made (receives)
  std::vector<std::optional<std::string>> dead_;       // by peer: why it cannot be reached
  std::vector<std::deque<std::unique_ptr<SendOp>>> sends_;  // by peer, in posting order
  // By peer: sent as an address (single copy), done once the receiver has read them.
  std::vector<std::deque<std::unique_ptr<SendOp>>> remote_wait_;
  // By peer: announced (ready-to-send), waiting for the receiver's clear-to-send.
  std::vector<std::deque<std::unique_ptr<SendOp>>> announced_;
  // By peer: cleared to send, the payload not yet all written.
  std::vector<std::deque<std::unique_ptr<SendOp>>> cleared_;
  std::vector<std::size_t> credit_;  // by peer: eager bytes it may still be sent unasked
  std::vector<std::size_t> owed_;    // by peer: consumed eager bytes not yet given back
  std::vector<std::size_t> held_;    // by peer: its eager bytes kept unexpected here
  std::deque<std::unique_ptr<RecvOp>> recvs_;               // posted, not yet matched
  std::vector<std::unique_ptr<RecvOp>> bound_;              // matched, payload arriving
  std::deque<std::unique_ptr<Message>> unexpected_;         // in arrival order
  std::vector<bool> left_;               // by peer: said goodbye (its messenger was destroyed)
  std::vector<Completion> finished_;     // completed outside progress() (sends to self)
  OpId next_id_ = 1;
  MessengerStats stats_;
};

}  // namespace ringfuse::p2p
