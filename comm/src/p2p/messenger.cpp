#include "p2p/messenger.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/errors.hpp"
#include "p2p/acceptor.hpp"
#include "p2p/handshake.hpp"
#include "rendezvous/all_gather.hpp"

namespace ringfuse::p2p {
namespace {

constexpr std::uint32_t kMessageMagic = 0x52464d47;  // "RFMG"
constexpr std::int32_t kGoodbyeTag = -2;             // the sender's messenger is going away

constexpr std::uint32_t kRemoteMagic = 0x52465243;   // "RFRC": payload at `address`
// Rendezvous: the announcement (no payload), then, once cleared, the payload of message `id`
// (inline, or at `address` on a pipe that reads the sender's memory).
constexpr std::uint32_t kAnnounceMagic = 0x52465254;    // "RFRT": ready to send
constexpr std::uint32_t kDataMagic = 0x52464454;        // "RFDT"
constexpr std::uint32_t kRemoteDataMagic = 0x52465244;  // "RFRD"

struct Header {
  std::uint32_t magic;
  std::int32_t tag;
  std::uint64_t bytes;
  std::uint64_t address;  // kRemote*: where the payload lies in the sender's memory
  std::uint64_t id;       // the sender's id of the message (rendezvous frames)
};
static_assert(sizeof(Header) == 32);

bool carries_payload(std::uint32_t magic) { return magic == kMessageMagic || magic == kDataMagic; }
bool remote(std::uint32_t magic) { return magic == kRemoteMagic || magic == kRemoteDataMagic; }
bool eager(std::uint32_t magic) { return magic == kMessageMagic || magic == kRemoteMagic; }

// What a receiver sends back on a connection it accepted: on the socket's reverse direction
// (TCP pairs), or through the pipe's reverse ring (shared-memory pairs, whose socket carries
// doorbell bytes back). A frame's first byte is never 0.
constexpr std::uint32_t kControlMagic = 0x52464354;  // "RFCT": first byte 'T'
constexpr std::uint32_t kCredit = 1;                 // `credit` more eager bytes may come
constexpr std::uint32_t kClearToSend = 2;            // send message `id`'s payload (+ credit)

struct Control {
  std::uint32_t magic;
  std::uint32_t kind;
  std::uint64_t id;
  std::uint64_t credit;
};
static_assert(sizeof(Control) == 24);

/// Reads what is there into buf[got, want); false on EOF; throws std::system_error.
bool read_some(int fd, void* buf, std::size_t want, std::size_t& got) {
  while (got < want) {
    const ssize_t n = ::recv(fd, static_cast<char*>(buf) + got, want - got, MSG_DONTWAIT);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    throw std::system_error(errno, std::generic_category(), "recv()");
  }
  return true;
}

std::string seconds(std::chrono::milliseconds ms) {
  return fmt::format("{:.1f} s", static_cast<double>(ms.count()) / 1000.0);
}

std::string tag_text(int tag) { return tag == kAnyTag ? "any tag" : fmt::format("tag {}", tag); }

// When this host's ranks outnumber the CPUs they may use, the peer a rank waits for is
// usually not running: spinning only delays it, so a waiting rank yields a few times instead
// and then sleeps (the shared-memory transport's policy, shm_transport.cpp).
constexpr int kOversubscribedYields = 8;

/// The CPUs this process may run on, as "0,1,5".
std::string allowed_cpus() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  std::string text;
  if (::sched_getaffinity(0, sizeof(cpus), &cpus) != 0) return text;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &cpus)) continue;
    if (!text.empty()) text += ',';
    text += std::to_string(cpu);
  }
  return text;
}

/// A peer's published "<cpus>;<unexpected bytes>;<host>:<port>", split.
struct Published {
  std::string cpus;
  std::size_t unexpected_bytes = 0;  // how much of this rank's eager messages it takes
  std::string address;
};

Published split_published(const std::string& value) {
  const auto first = value.find(';');
  const auto second = value.find(';', first + 1);
  if (first == std::string::npos || second == std::string::npos) return {{}, 0, value};
  return {value.substr(0, first),
          static_cast<std::size_t>(std::strtoull(value.c_str() + first + 1, nullptr, 10)),
          value.substr(second + 1)};
}

/// Whether the ranks that advertise this rank's host outnumber the CPUs they may use between
/// them (each rank's own mask may be one CPU: only the union tells).
bool host_oversubscribed(const std::vector<std::string>& published, const std::string& host) {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  int ranks_here = 0;
  for (const auto& value : published) {
    const auto [cpu_list, unexpected, address] = split_published(value);
    if (address.substr(0, address.rfind(':')) != host) continue;
    ++ranks_here;
    std::size_t at = 0;
    while (at < cpu_list.size()) {
      const auto comma = cpu_list.find(',', at);
      const int cpu = std::atoi(cpu_list.substr(at, comma - at).c_str());
      if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &cpus);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  return CPU_COUNT(&cpus) > 0 && ranks_here > CPU_COUNT(&cpus);
}

}  // namespace

struct Messenger::Link {
  transport::Socket socket;
  // The pair shares memory: messages travel through this pipe, and the socket only carries
  // doorbell bytes and the peer's close.
  std::unique_ptr<ShmPipe> pipe;
  std::uint64_t remote_sent = 0;  // outgoing: messages sent as an address (single copy)
  // Outgoing: the control frame being read back.
  Control control{};
  std::size_t control_got = 0;
  // Incoming: control frames not yet sent back (the socket, or the reverse ring, was full).
  std::string control_out;
  // Incoming: the message being read.
  Header header{};
  std::size_t header_got = 0;
  std::byte* target = nullptr;
  std::size_t payload_got = 0;
  RecvOp* bound = nullptr;  // the receive it lands in, or
  Message* message = nullptr;  // the unexpected message it is kept as
};

struct Messenger::SendOp {
  OpId id;
  const std::byte* data;
  std::size_t bytes;
  int peer;
  int tag;
  Header header;
  std::size_t written = 0;  // of header and payload together
  Clock::time_point last_progress;
  std::uint64_t remote_seq = 0;  // single copy: done once the pipe counted this many
  // Announced: why it was not sent eagerly, for the timeout's message.
  const char* why_announced = "";
  bool chosen = false;  // eager (its credit taken) or announced, decided once
};

struct Messenger::RecvOp {
  OpId id;
  std::byte* data;
  std::size_t capacity;
  std::size_t element;
  int peer;
  int tag;
  Clock::time_point last_progress;
  int source = -1;
  int got_tag = 0;
  std::size_t bytes = 0;
  std::uint64_t announced = 0;  // matched to this announcement of `source`: cleared, waiting
};

struct Messenger::Message {
  int source;
  int tag;
  std::vector<std::byte> data;
  bool complete = false;
  std::size_t bytes = 0;
  std::uint64_t announced = 0;  // an announcement only (its payload waits at the sender)
};

Messenger::Messenger(rendezvous::Store* store, MessengerOptions options)
    : options_(std::move(options)) {
  const auto n = static_cast<std::size_t>(options_.size);
  out_.resize(n);
  in_.resize(n);
  dead_.resize(n);
  sends_.resize(n);
  remote_wait_.resize(n);
  announced_.resize(n);
  cleared_.resize(n);
  credit_.assign(n, options_.unexpected_bytes);
  owed_.assign(n, 0);
  held_.assign(n, 0);
  left_.assign(n, false);
  if (options_.size == 1) return;
  try {
    acceptor_ = std::make_unique<Acceptor>(
        options_.advertise_host,
        identity(),
        options_.user_timeout);
  } catch (const std::system_error& e) {
    throw core::rank_error(ErrorKind::system, me(),
                           "{}: cannot listen on {}: {}; check RINGFUSE_HOST_ADDR",
                           options_.purpose, options_.advertise_host, e.what());
  }
  // Every peer's address now, while every rank builds its messenger: a send never reads the
  // store, so it never waits on a store client another thread of this rank holds.
  // The CPUs each rank may use travel along, to choose how a waiting rank waits, and how
  // much of each sender's unexpected data it takes (the senders' credit).
  const auto key = options_.key_prefix + "addr";
  try {
    const auto published = rendezvous::all_gather(
        *store, key,
        fmt::format("{};{};{}:{}", allowed_cpus(), options_.unexpected_bytes,
                    options_.advertise_host, acceptor_->port()),
        options_.rank, options_.size, options_.connect_timeout);
    // Each peer's own bound is this rank's credit with it.
    for (std::size_t peer = 0; peer < published.size(); ++peer) {
      auto parts = split_published(published[peer]);
      addresses_.push_back(std::move(parts.address));
      credit_[peer] = parts.unexpected_bytes;
    }
    oversubscribed_ = host_oversubscribed(published, options_.advertise_host);
  } catch (const Error& e) {
    throw core::rank_error(e.kind(), me(),
                           "{}: not every rank published its point-to-point address within {} "
                           "({}/<rank>): {}; does every rank create its Context (and engine) "
                           "alike?",
                           options_.purpose, seconds(options_.connect_timeout), key, e.what());
  }
}

Messenger::~Messenger() {
  spdlog::debug("rank {}: {}: {} messages sent eagerly, {} announced (rendezvous); held at most "
                "{} bytes of unexpected messages",
                me(), options_.purpose, stats_.eager_sends, stats_.rendezvous_sends,
                stats_.unexpected_peak);
  const Header goodbye{kMessageMagic, kGoodbyeTag, 0, 0, 0};
  const auto deadline = Clock::now() + std::chrono::milliseconds(200);
  for (auto& link : out_) {
    if (!link || !link->socket.valid()) continue;
    try {
      if (link->pipe) {
        // Through the ring, behind whatever is still in it, then the doorbell.
        const auto* bytes = reinterpret_cast<const std::byte*>(&goodbye);
        std::size_t written = 0;
        while (written < sizeof(goodbye) && Clock::now() < deadline) {
          written += link->pipe->write(bytes + written, sizeof(goodbye) - written);
        }
        const char bell = 0;
        (void)::send(link->socket.fd(), &bell, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      } else {
        (void)transport::write_all(link->socket.fd(), &goodbye, sizeof(goodbye), deadline);
      }
    } catch (const std::exception&) {
      // The peer is gone already: nothing to tell it.
    }
  }
}

OpId Messenger::post_send(const void* data, std::size_t bytes, int peer, int tag) {
  if (peer < 0 || peer >= options_.size) {
    throw core::rank_error(ErrorKind::invalid_argument, me(),
                           "send: peer {} is not a rank of this world of {}", peer,
                           options_.size);
  }
  if (tag < 0) {
    throw core::rank_error(ErrorKind::invalid_argument, me(),
                           "send to rank {}: tag {} is negative; tags are >= 0", global(peer),
                           tag);
  }
  if (data == nullptr && bytes > 0) {
    throw core::rank_error(ErrorKind::invalid_argument, me(),
                           "send to rank {}: the buffer is null", global(peer));
  }
  if (dead_[peer]) {
    throw core::error_at(ErrorKind::peer_failure, me(), global(peer), "{}", *dead_[peer]);
  }
  const OpId id = next_id_++;
  if (peer == options_.rank) {
    // To itself: kept as an unexpected message at once, so a later receive matches it.
    auto message = std::make_unique<Message>();
    message->source = peer;
    message->tag = tag;
    const auto* first = static_cast<const std::byte*>(data);
    message->data.assign(first, first + bytes);
    message->bytes = bytes;
    message->complete = true;
    unexpected_.push_back(std::move(message));
    finished_.push_back(Completion{id, {}, std::nullopt});
    return id;
  }
  auto op = std::make_unique<SendOp>(SendOp{id, static_cast<const std::byte*>(data), bytes, peer,
                                            tag, Header{kMessageMagic, tag, bytes, 0, id}, 0,
                                            Clock::now()});
  sends_[peer].push_back(std::move(op));
  return id;
}

OpId Messenger::post_recv(void* data, std::size_t capacity_bytes, std::size_t element_bytes,
                          int peer, int tag) {
  if (peer != kAnySource && (peer < 0 || peer >= options_.size)) {
    throw core::rank_error(ErrorKind::invalid_argument, me(),
                           "recv: peer {} is not a rank of this world of {} (nor kAnySource)",
                           peer, options_.size);
  }
  if (tag < 0 && tag != kAnyTag) {
    throw core::rank_error(ErrorKind::invalid_argument, me(),
                           "recv from rank {}: tag {} is negative; tags are >= 0, or kAnyTag",
                           global(peer), tag);
  }
  if (data == nullptr && capacity_bytes > 0) {
    throw core::rank_error(ErrorKind::invalid_argument, me(),
                           "recv from rank {}: the buffer is null", global(peer));
  }
  if (peer != kAnySource && dead_[peer]) {
    throw core::error_at(ErrorKind::peer_failure, me(), global(peer), "{}", *dead_[peer]);
  }
  const OpId id = next_id_++;
  recvs_.push_back(std::make_unique<RecvOp>(RecvOp{id, static_cast<std::byte*>(data),
                                                   capacity_bytes,
                                                   std::max<std::size_t>(element_bytes, 1), peer,
                                                   tag, Clock::now()}));
  return id;
}

bool Messenger::cancel(OpId id) {
  for (auto it = recvs_.begin(); it != recvs_.end(); ++it) {
    if ((*it)->id == id) {
      recvs_.erase(it);
      return true;
    }
  }
  for (auto& queue : sends_) {
    for (auto it = queue.begin(); it != queue.end(); ++it) {
      if ((*it)->id == id && (*it)->written == 0) {
        // Chosen to go eagerly but not a byte written: its credit was not spent.
        if ((*it)->chosen && eager((*it)->header.magic)) credit_[(*it)->peer] += (*it)->bytes;
        queue.erase(it);
        return true;
      }
    }
  }
  return false;
}

bool Messenger::busy() const {
  if (!recvs_.empty() || !bound_.empty() || !finished_.empty()) return true;
  const auto pending = [](const auto& q) { return !q.empty(); };
  return std::any_of(sends_.begin(), sends_.end(), pending) ||
         std::any_of(remote_wait_.begin(), remote_wait_.end(), pending) ||
         std::any_of(announced_.begin(), announced_.end(), pending) ||
         std::any_of(cleared_.begin(), cleared_.end(), pending);
}

bool Messenger::recv_wants(const RecvOp& op, int source, int tag) const {
  return (op.peer == kAnySource || op.peer == source) && (op.tag == kAnyTag || op.tag == tag);
}

std::string Messenger::describe_recv(const RecvOp& op) const {
  return fmt::format("recv of up to {} bytes from {} ({})", op.capacity,
                     op.peer == kAnySource ? std::string("any rank")
                                           : fmt::format("rank {}", global(op.peer)),
                     tag_text(op.tag));
}

Error Messenger::truncation(const RecvOp& op, int source, int tag, std::size_t bytes) const {
  return core::error_at(ErrorKind::invalid_argument, me(), global(source),
                        "{}: rank {} sent {} bytes with tag {}, longer than the {} bytes of the "
                        "receive buffer; the message stays queued for a receive with room for "
                        "it",
                        describe_recv(op), global(source), bytes, tag, op.capacity);
}

void Messenger::match_unexpected(std::vector<Completion>& done) {
  for (auto it = recvs_.begin(); it != recvs_.end();) {
    RecvOp& op = **it;
    // The first message (arrival order) this receive wants; one still arriving from its
    // source is the newest from there, so skipping it overtakes nothing of that source.
    auto found = std::find_if(unexpected_.begin(), unexpected_.end(), [&](const auto& m) {
      return m->complete && recv_wants(op, m->source, m->tag);
    });
    if (found == unexpected_.end()) {
      ++it;
      continue;
    }
    Message& message = **found;
    if (message.bytes > op.capacity) {
      done.push_back(Completion{op.id, {}, truncation(op, message.source, message.tag,
                                                      message.bytes)});
    } else if (message.announced != 0) {
      const int source = message.source;
      const std::uint64_t id = message.announced;
      op.source = source;
      op.got_tag = message.tag;
      op.bytes = message.bytes;
      --stats_.unexpected_messages;
      unexpected_.erase(found);
      auto taken = std::move(*it);
      it = recvs_.erase(it);
      clear_to_send(source, std::move(taken), id);
      continue;
    } else {
      if (!message.data.empty()) std::memcpy(op.data, message.data.data(), message.data.size());
      done.push_back(Completion{op.id,
                                RecvStatus{message.source, message.tag,
                                           message.data.size() / op.element},
                                std::nullopt});
      if (message.source != options_.rank) {
        stats_.unexpected_bytes -= message.data.size();
        --stats_.unexpected_messages;
        held_[message.source] -= message.data.size();
        return_credit(message.source, message.data.size());
      }
      unexpected_.erase(found);
    }
    it = recvs_.erase(it);
  }
}

Messenger::Link& Messenger::outgoing(int peer) {
  if (!out_[peer]) start_connect(peer);
  return *out_[peer];
}

void Messenger::start_connect(int peer) {
  const std::string& address = addresses_[static_cast<std::size_t>(peer)];
  try {
    const auto colon = address.rfind(':');
    const std::string host = address.substr(0, colon);
    const auto port = static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)));
    const auto deadline = Clock::now() + options_.connect_timeout;
    auto link = std::make_unique<Link>();
    link->socket = transport::connect_with_retry(host, port, deadline);
    transport::configure_data_socket(link->socket.fd(), options_.user_timeout);
    authenticate_to_acceptor(link->socket, identity(), peer, deadline);
    // Segment names under the world's scope, so the launcher's clean-up of a job finds them.
    std::string_view scope = options_.key_prefix;
    if (scope.starts_with("ringfuse/")) scope.remove_prefix(9);
    link->pipe = offer_pipe(link->socket, options_.shared_memory,
                            fmt::format("{}{}to{}-", scope, options_.rank, peer),
                            options_.pipe_bytes, deadline);
    spdlog::debug("rank {}: {}: connected to rank {} over {}", me(), options_.purpose,
                  global(peer), link->pipe ? "shared memory" : "tcp");
    out_[peer] = std::move(link);
  } catch (const Error&) {
    throw;  // the handshake's own error, attributed already
  } catch (const std::exception& e) {
    throw core::error_at(ErrorKind::peer_failure, me(), global(peer),
                         "{}: cannot connect to rank {} at {}: {}; is it still running?",
                         options_.purpose, global(peer), address, e.what());
  }
}

void Messenger::choose_protocol(int peer, SendOp& op, const Link& link) {
  op.chosen = true;
  const bool small = op.bytes <= options_.eager_bytes;
  if (small && op.bytes <= credit_[peer]) {
    credit_[peer] -= op.bytes;
    ++stats_.eager_sends;
    if (link.pipe && link.pipe->single_copy() && op.bytes >= options_.single_copy_min) {
      op.header.magic = kRemoteMagic;
      op.header.address = reinterpret_cast<std::uint64_t>(op.data);
    }
    return;
  }
  ++stats_.rendezvous_sends;
  op.header.magic = kAnnounceMagic;
  op.why_announced = small ? "the receiver holds RINGFUSE_P2P_UNEXPECTED_BYTES of this rank's "
                             "messages already: this one waits for its receive"
                           : "larger than RINGFUSE_P2P_EAGER_BYTES: it waits for its receive";
}

void Messenger::progress_sends(int peer, std::vector<Completion>& done) {
  auto& waiting = remote_wait_[peer];
  if (!waiting.empty()) {
    ShmPipe& pipe = *out_[peer]->pipe;
    if (pipe.copy_together()) {
      // The receiver may be copying one of these now: take pieces of it too.
      for (auto& op : waiting) {
        if (op->bytes >= options_.copy_together_min && pipe.help_copy(op->remote_seq, op->data)) {
          op->last_progress = Clock::now();
        }
      }
    }
    // Single copy: the receiver has read these from our memory.
    const std::uint64_t read = pipe.remote_done();
    while (!waiting.empty() && waiting.front()->remote_seq <= read) {
      done.push_back(Completion{waiting.front()->id, {}, std::nullopt});
      waiting.pop_front();
    }
  }
  auto& queue = sends_[peer];
  auto& cleared = cleared_[peer];
  if (queue.empty() && cleared.empty()) return;
  Link& link = outgoing(peer);
  bool moved = false;
  while (true) {
    // A frame begun is finished first; then payloads their receiver asked for (its buffer
    // waits for them), then new messages in posting order.
    std::deque<std::unique_ptr<SendOp>>* from = nullptr;
    if (!queue.empty() && queue.front()->written > 0) {
      from = &queue;
    } else if (!cleared.empty()) {
      from = &cleared;
    } else if (!queue.empty()) {
      from = &queue;
    } else {
      break;
    }
    SendOp& op = *from->front();
    if (!op.chosen) choose_protocol(peer, op, link);
    if (op.written == 0 && from == &cleared && link.pipe && link.pipe->single_copy() &&
        op.bytes >= options_.single_copy_min) {
      op.header.magic = kRemoteDataMagic;
      op.header.address = reinterpret_cast<std::uint64_t>(op.data);
    }
    const std::size_t payload = carries_payload(op.header.magic) ? op.bytes : 0;
    const std::size_t total = sizeof(Header) + payload;
    while (op.written < total) {
      if (link.pipe) {
        // Header, then payload, copied straight from the caller's buffer into the ring.
        std::size_t n = 0;
        if (op.written < sizeof(Header)) {
          n = link.pipe->write(reinterpret_cast<const std::byte*>(&op.header) + op.written,
                               sizeof(Header) - op.written);
        } else {
          const std::size_t at = op.written - sizeof(Header);
          n = link.pipe->write(op.data + at, payload - at);
        }
        if (n == 0) break;
        op.written += n;
        op.last_progress = Clock::now();
        moved = true;
        continue;
      }
      iovec parts[2];
      int count = 0;
      if (op.written < sizeof(Header)) {
        parts[count++] = {reinterpret_cast<char*>(&op.header) + op.written,
                          sizeof(Header) - op.written};
        if (payload > 0) parts[count++] = {const_cast<std::byte*>(op.data), payload};
      } else {
        const std::size_t at = op.written - sizeof(Header);
        parts[count++] = {const_cast<std::byte*>(op.data) + at, payload - at};
      }
      msghdr msg{};
      msg.msg_iov = parts;
      msg.msg_iovlen = static_cast<std::size_t>(count);
      const ssize_t n = ::sendmsg(link.socket.fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        op.written += static_cast<std::size_t>(n);
        op.last_progress = Clock::now();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      throw core::error_at(ErrorKind::peer_failure, me(), global(peer),
                           "{}: sending {} bytes (tag {}) to rank {} failed: {}; did rank {} "
                           "exit or fail?",
                           options_.purpose, op.bytes, op.tag, global(peer),
                           std::strerror(errno), global(peer));
    }
    if (op.written < total) break;  // the ring is full
    auto finished = std::move(from->front());
    from->pop_front();
    if (remote(finished->header.magic)) {
      // Complete once read; the next messages may go into the ring behind it meanwhile.
      finished->remote_seq = ++link.remote_sent;
      waiting.push_back(std::move(finished));
    } else if (finished->header.magic == kAnnounceMagic) {
      // The payload goes when the receiver clears it (on_control).
      finished->written = 0;
      finished->last_progress = Clock::now();
      announced_[peer].push_back(std::move(finished));
    } else {
      done.push_back(Completion{finished->id, {}, std::nullopt});
    }
  }
  if (moved && link.pipe->reader_asleep()) ring_doorbell(link.socket);
}

void Messenger::read_back(int peer) {
  Link& link = *out_[peer];
  auto* frame = reinterpret_cast<std::byte*>(&link.control);
  while (true) {
    const std::size_t n =
        link.pipe->read_back(frame + link.control_got, sizeof(Control) - link.control_got);
    if (n == 0) return;
    link.control_got += n;
    if (link.control_got < sizeof(Control)) return;
    link.control_got = 0;
    on_control(peer);
  }
}

bool Messenger::read_control(int peer) {
  Link& link = *out_[peer];
  if (link.pipe) {
    read_back(peer);
    return drain_doorbells(link.socket);
  }
  std::array<std::byte, 512> bytes;
  while (true) {
    const ssize_t n = ::recv(link.socket.fd(), bytes.data(), bytes.size(), MSG_DONTWAIT);
    if (n > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        reinterpret_cast<std::byte*>(&link.control)[link.control_got++] = bytes[i];
        if (link.control_got == sizeof(Control)) {
          link.control_got = 0;
          on_control(peer);
        }
      }
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    return false;  // reset: the peer is gone
  }
}

void Messenger::on_control(int peer) {
  const Control& control = out_[peer]->control;
  if (control.magic != kControlMagic ||
      (control.kind != kCredit && control.kind != kClearToSend)) {
    throw core::error_at(ErrorKind::protocol, me(), global(peer),
                         "{}: a malformed control frame from rank {}", options_.purpose,
                         global(peer));
  }
  credit_[peer] += static_cast<std::size_t>(control.credit);
  if (control.kind != kClearToSend) return;
  auto& announced = announced_[peer];
  const auto found = std::find_if(announced.begin(), announced.end(),
                                  [&](const auto& op) { return op->id == control.id; });
  if (found == announced.end()) {
    throw core::error_at(ErrorKind::protocol, me(), global(peer),
                         "{}: rank {} cleared a message this rank did not announce",
                         options_.purpose, global(peer));
  }
  SendOp& op = **found;
  op.header = Header{kDataMagic, op.tag, op.bytes, 0, op.id};
  op.written = 0;
  op.last_progress = Clock::now();
  cleared_[peer].push_back(std::move(*found));
  announced.erase(found);
}

void Messenger::send_control(int peer, std::uint32_t kind, std::uint64_t id) {
  if (!in_[peer] || !in_[peer]->socket.valid()) return;  // gone: nothing to tell it
  const Control control{kControlMagic, kind, id, owed_[peer]};
  owed_[peer] = 0;
  const auto* bytes = reinterpret_cast<const char*>(&control);
  in_[peer]->control_out.append(bytes, sizeof(control));
  flush_control(peer);
}

void Messenger::flush_control(int peer) {
  Link& link = *in_[peer];
  auto& out = link.control_out;
  if (link.pipe) {
    const std::size_t n =
        link.pipe->write_back(reinterpret_cast<const std::byte*>(out.data()), out.size());
    out.erase(0, n);
    if (n > 0 && link.pipe->writer_asleep()) ring_doorbell(link.socket);
    return;
  }
  while (!out.empty()) {
    const ssize_t n = ::send(link.socket.fd(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    // The peer is gone: reading its connection reports that.
    out.clear();
    return;
  }
}

void Messenger::clear_to_send(int peer, std::unique_ptr<RecvOp> op, std::uint64_t id) {
  op->announced = id;
  op->last_progress = Clock::now();
  bound_.push_back(std::move(op));
  send_control(peer, kClearToSend, id);
}

void Messenger::return_credit(int peer, std::size_t bytes) {
  if (bytes == 0) return;
  owed_[peer] += bytes;
  // Given back in quarters of the bound (and with every clear-to-send): a sender short of
  // credit announces instead of waiting, so a late return costs a round trip, never a hang.
  if (owed_[peer] >= std::max<std::size_t>(options_.unexpected_bytes / 4, 1)) {
    send_control(peer, kCredit, 0);
  }
}

void Messenger::ring_doorbell(const transport::Socket& socket) {
  const char bell = 0;
  // A full socket buffer already holds bells enough to wake the peer.
  (void)::send(socket.fd(), &bell, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

bool Messenger::drain_doorbells(const transport::Socket& socket) {
  char bells[256];
  while (true) {
    const ssize_t n = ::recv(socket.fd(), bells, sizeof(bells), MSG_DONTWAIT);
    if (n > 0) continue;
    if (n == 0) return false;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    return false;  // reset: the peer is gone
  }
}

void Messenger::on_header(int peer, std::vector<Completion>& done) {
  Link& link = *in_[peer];
  const Header& h = link.header;
  const bool known = h.magic == kMessageMagic || h.magic == kAnnounceMagic ||
                     h.magic == kDataMagic ||
                     ((h.magic == kRemoteMagic || h.magic == kRemoteDataMagic) && link.pipe);
  if (!known) {
    throw core::error_at(ErrorKind::protocol, me(), global(peer),
                         "{}: a malformed message header from rank {}", options_.purpose,
                         global(peer));
  }
  if (h.tag == kGoodbyeTag) {
    left_[peer] = true;
    link.header_got = 0;
    return;
  }
  const auto bytes = static_cast<std::size_t>(h.bytes);
  if (h.magic == kDataMagic || h.magic == kRemoteDataMagic) {
    // The payload of an announcement this rank matched and cleared: straight into its receive.
    const auto found = std::find_if(bound_.begin(), bound_.end(), [&](const auto& op) {
      return op->announced == h.id && op->source == peer;
    });
    if (found == bound_.end() || (*found)->bytes != bytes) {
      throw core::error_at(ErrorKind::protocol, me(), global(peer),
                           "{}: rank {} sent the payload of a message ({} bytes, tag {}) this "
                           "rank did not clear it to send",
                           options_.purpose, global(peer), bytes, h.tag);
    }
    RecvOp& op = **found;
    op.announced = 0;
    op.last_progress = Clock::now();
    link.bound = &op;
    link.target = op.data;
    return;
  }
  const bool announcement = h.magic == kAnnounceMagic;
  for (auto it = recvs_.begin(); it != recvs_.end(); ++it) {
    RecvOp& op = **it;
    if (!recv_wants(op, peer, h.tag)) continue;
    if (bytes > op.capacity) {
      // The receive fails; the message is still read, and kept for a larger receive.
      done.push_back(Completion{op.id, {}, truncation(op, peer, h.tag, bytes)});
      recvs_.erase(it);
      break;
    }
    op.source = peer;
    op.got_tag = h.tag;
    op.bytes = bytes;
    op.last_progress = Clock::now();
    if (announcement) {
      link.header_got = 0;  // nothing follows it now
      auto taken = std::move(*it);
      recvs_.erase(it);
      clear_to_send(peer, std::move(taken), h.id);
      return;
    }
    link.bound = &op;
    link.target = op.data;
    bound_.push_back(std::move(*it));
    recvs_.erase(it);
    return;
  }
  auto message = std::make_unique<Message>();
  message->source = peer;
  message->tag = h.tag;
  message->bytes = bytes;
  ++stats_.unexpected_messages;
  if (announcement) {
    message->announced = h.id;
    message->complete = true;
    link.header_got = 0;
    unexpected_.push_back(std::move(message));
    return;
  }
  if (held_[peer] + bytes > options_.unexpected_bytes) {
    throw core::error_at(ErrorKind::protocol, me(), global(peer),
                         "{}: rank {} sent {} bytes (tag {}) beyond its credit: this rank holds "
                         "{} bytes of its messages for no receive, and takes {} at most "
                         "(RINGFUSE_P2P_UNEXPECTED_BYTES)",
                         options_.purpose, global(peer), bytes, h.tag, held_[peer],
                         options_.unexpected_bytes);
  }
  held_[peer] += bytes;
  message->data.resize(bytes);
  stats_.unexpected_bytes += bytes;
  stats_.unexpected_peak = std::max(stats_.unexpected_peak, stats_.unexpected_bytes);
  link.message = message.get();
  link.target = message->data.data();
  unexpected_.push_back(std::move(message));
}

void Messenger::finish_message(int peer, std::vector<Completion>& done) {
  Link& link = *in_[peer];
  if (link.bound != nullptr) {
    RecvOp* op = link.bound;
    if (eager(link.header.magic)) return_credit(peer, op->bytes);
    done.push_back(
        Completion{op->id, RecvStatus{op->source, op->got_tag, op->bytes / op->element},
                   std::nullopt});
    bound_.erase(std::find_if(bound_.begin(), bound_.end(),
                              [&](const auto& b) { return b.get() == op; }));
  } else if (link.message != nullptr) {
    link.message->complete = true;
  }
  link.header_got = 0;
  link.payload_got = 0;
  link.target = nullptr;
  link.bound = nullptr;
  if (link.message != nullptr) {
    link.message = nullptr;
    match_unexpected(done);
  }
}

void Messenger::read_incoming(int peer, std::vector<Completion>& done, bool check_socket) {
  Link& link = *in_[peer];
  ShmPipe* pipe = link.pipe.get();
  const int fd = link.socket.fd();
  bool consumed = false;
  // Reads from the pipe, or the socket, into buf[got, want); false on EOF (socket only).
  const auto fill = [&](void* buf, std::size_t want, std::size_t& got) {
    if (pipe == nullptr) return read_some(fd, buf, want, got);
    const std::size_t n = pipe->read(static_cast<std::byte*>(buf) + got, want - got);
    got += n;
    consumed = consumed || n > 0;
    return true;
  };
  // Why the peer's close is a failure; nullopt when it said goodbye first.
  const int who = global(peer);
  const auto closed = [&]() -> std::optional<Error> {
    if (link.header_got == 0 && left_[peer]) return std::nullopt;
    if (link.header_got < sizeof(Header) && link.header_got > 0) {
      return core::error_at(ErrorKind::peer_failure, me(), who,
                            "{}: rank {} closed its connection in the middle of a message "
                            "header: it exited, crashed or was killed",
                            options_.purpose, who);
    }
    if (link.header_got == sizeof(Header)) {
      return core::error_at(ErrorKind::peer_failure, me(), who,
                            "{}: rank {} closed its connection in the middle of a message of {} "
                            "bytes (tag {}): it exited, crashed or was killed",
                            options_.purpose, who, link.header.bytes, link.header.tag);
    }
    return core::error_at(ErrorKind::peer_failure, me(), who,
                          "{}: rank {} closed its connection without leaving in order (it "
                          "exited early, crashed or was killed)",
                          options_.purpose, who);
  };
  for (int pass = 0; pass < 2; ++pass) {
    while (true) {
      if (link.header_got < sizeof(Header)) {
        if (!fill(&link.header, sizeof(Header), link.header_got)) {
          if (auto error = closed()) throw *error;
          link.socket.reset();  // an orderly exit, announced
          return;
        }
        if (link.header_got < sizeof(Header)) break;
        on_header(peer, done);
        if (link.header_got == 0) continue;  // a goodbye, or an announcement
        if (remote(link.header.magic)) {
          const auto bytes = static_cast<std::size_t>(link.header.bytes);
          if (bytes >= options_.copy_together_min && pipe->copy_together()) {
            // Message numbers count single-copy messages in stream order, as the sender does.
            pipe->copy_together(
                link.target, link.header.address, bytes, pipe->remote_done() + 1,
                [&] {
                  if (pipe->writer_asleep()) ring_doorbell(link.socket);
                },
                [&] {
                  char probe;
                  return ::recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
                },
                Clock::now() + options_.op_timeout);
          } else if (bytes > 0) {
            pipe->read_remote(link.target, link.header.address, bytes);
          }
          link.payload_got = bytes;
          pipe->count_remote_done();
          consumed = true;
          finish_message(peer, done);
          continue;
        }
        if (link.header.bytes == 0) {
          finish_message(peer, done);
          continue;
        }
      }
      const std::size_t want = static_cast<std::size_t>(link.header.bytes);
      const std::size_t before = link.payload_got;
      if (!fill(link.target, want, link.payload_got)) throw *closed();
      if (link.payload_got > before && link.bound != nullptr) {
        link.bound->last_progress = Clock::now();
      }
      if (link.payload_got < want) break;
      finish_message(peer, done);
    }
    if (pipe == nullptr) return;
    if (consumed && pipe->writer_asleep()) ring_doorbell(link.socket);
    // The socket carries only doorbells and the close; after a close, the ring is read to
    // its end once more (the goodbye is the last thing in it) before judging.
    if (pass == 1) break;
    if (!check_socket || drain_doorbells(link.socket)) return;
  }
  if (auto error = closed()) throw *error;
  link.socket.reset();  // an orderly exit, announced
}

void Messenger::fail_peer(int peer, const std::string& why, std::vector<Completion>& done) {
  if (!dead_[peer]) dead_[peer] = why;
  const Error error = core::error_at(ErrorKind::peer_failure, me(), global(peer), "{}", why);
  for (auto& op : sends_[peer]) done.push_back(Completion{op->id, {}, error});
  sends_[peer].clear();
  for (auto& op : remote_wait_[peer]) done.push_back(Completion{op->id, {}, error});
  remote_wait_[peer].clear();
  for (auto* queue : {&announced_[peer], &cleared_[peer]}) {
    for (auto& op : *queue) done.push_back(Completion{op->id, {}, error});
    queue->clear();
  }
  if (out_[peer]) out_[peer]->socket.reset();
  // Receives matched to its messages (the one arriving, announced ones cleared to come)
  // will not get them.
  for (auto it = bound_.begin(); it != bound_.end();) {
    if ((*it)->source == peer) {
      done.push_back(Completion{(*it)->id, {}, error});
      it = bound_.erase(it);
    } else {
      ++it;
    }
  }
  // What is kept of it: a message still arriving, and announcements whose payload will never
  // come. Its complete messages stay for their receives.
  for (auto it = unexpected_.begin(); it != unexpected_.end();) {
    Message& message = **it;
    const bool arriving = in_[peer] && in_[peer]->message == &message;
    if (message.source == peer && (arriving || message.announced != 0)) {
      stats_.unexpected_bytes -= message.data.size();
      --stats_.unexpected_messages;
      it = unexpected_.erase(it);
    } else {
      ++it;
    }
  }
  in_[peer].reset();
  // A dead rank fails the receives waiting for it, and those from any rank (as MPI does):
  // whatever it would have sent will never come.
  for (auto it = recvs_.begin(); it != recvs_.end();) {
    if ((*it)->peer == peer || (*it)->peer == kAnySource) {
      done.push_back(Completion{(*it)->id, {}, error});
      it = recvs_.erase(it);
    } else {
      ++it;
    }
  }
}

void Messenger::check_deadlines(std::vector<Completion>& done) {
  const auto now = Clock::now();
  const auto limit = options_.op_timeout;
  for (int peer = 0; peer < options_.size; ++peer) {
    if (!remote_wait_[peer].empty() &&
        now - remote_wait_[peer].front()->last_progress > limit) {
      fail_peer(peer,
                fmt::format("{}: rank {} did not read a message of {} bytes (tag {}) for {}; is "
                            "rank {} receiving?",
                            options_.purpose, global(peer), remote_wait_[peer].front()->bytes,
                            remote_wait_[peer].front()->tag, seconds(limit), global(peer)),
                done);
      continue;
    }
    if (!announced_[peer].empty()) {
      const auto oldest = std::min_element(
          announced_[peer].begin(), announced_[peer].end(),
          [](const auto& a, const auto& b) { return a->last_progress < b->last_progress; });
      const SendOp& op = **oldest;
      if (now - op.last_progress > limit) {
        fail_peer(peer,
                  fmt::format("{}: send of {} bytes (tag {}) to rank {}: no receive for it "
                              "after {} ({}); is rank {} receiving it?",
                              options_.purpose, op.bytes, op.tag, global(peer), seconds(limit),
                              op.why_announced, global(peer)),
                  done);
        continue;
      }
    }
    for (auto* queue : {&sends_[peer], &cleared_[peer]}) {
      if (queue->empty() || now - queue->front()->last_progress <= limit) continue;
      const SendOp& op = *queue->front();
      fail_peer(peer,
                fmt::format("{}: send of {} bytes (tag {}) to rank {} made no progress for {}; "
                            "is rank {} receiving?",
                            options_.purpose, op.bytes, op.tag, global(peer), seconds(limit),
                            global(peer)),
                done);
      break;
    }
  }
  for (auto it = bound_.begin(); it != bound_.end(); ++it) {
    const RecvOp& op = **it;
    const int peer = op.source;
    if (op.announced != 0 && left_[peer] && (!in_[peer] || !in_[peer]->socket.valid())) {
      done.push_back(Completion{
          op.id, {},
          core::error_at(ErrorKind::peer_failure, me(), global(peer),
                         "{}: {}: rank {} has left (its Context was destroyed) without sending "
                         "the {} bytes (tag {}) it announced",
                         options_.purpose, describe_recv(op), global(peer), op.bytes,
                         op.got_tag)});
      bound_.erase(it);
      return;  // bound_ changed
    }
    if (now - op.last_progress > limit) {
      fail_peer(peer,
                fmt::format("{}: rank {}'s message of {} bytes (tag {}) {} for {}",
                            options_.purpose, global(peer), op.bytes, op.got_tag,
                            op.announced != 0 ? "was cleared to come but did not start"
                                              : "stopped arriving",
                            seconds(limit)),
                done);
      return;  // bound_ changed
    }
  }
  for (auto it = recvs_.begin(); it != recvs_.end();) {
    RecvOp& op = **it;
    const bool gone = op.peer != kAnySource && left_[op.peer] &&
                      (!in_[op.peer] || !in_[op.peer]->socket.valid());
    if (gone) {
      done.push_back(Completion{
          op.id, {},
          core::error_at(ErrorKind::peer_failure, me(), global(op.peer),
                         "{}: {}: rank {} has left (its Context was destroyed) without sending "
                         "it",
                         options_.purpose, describe_recv(op), global(op.peer))});
      it = recvs_.erase(it);
    } else if (now - op.last_progress > limit) {
      done.push_back(Completion{
          op.id, {},
          core::error_at(ErrorKind::timeout, me(),
                         op.peer == kAnySource ? Error::kNoRank : global(op.peer),
                         "{}: {} timed out after {}: nothing came; is {} sending it?",
                         options_.purpose, describe_recv(op), seconds(limit),
                         op.peer == kAnySource ? std::string("any rank")
                                               : fmt::format("rank {}", global(op.peer)))});
      it = recvs_.erase(it);
    } else {
      ++it;
    }
  }
}

void Messenger::poll_once(std::chrono::microseconds wait) {
  std::vector<pollfd> fds;
  if (acceptor_) fds.push_back({acceptor_->wake_fd(), POLLIN, 0});
  for (int peer = 0; peer < options_.size; ++peer) {
    if (in_[peer] && in_[peer]->socket.valid()) {
      // (A pipe's full reverse ring is retried on the next pass, not polled for.)
      const bool blocked = !in_[peer]->pipe && !in_[peer]->control_out.empty();
      const short events = blocked ? POLLIN | POLLOUT : POLLIN;
      fds.push_back({in_[peer]->socket.fd(), events, 0});
    }
    if (out_[peer] && out_[peer]->socket.valid()) {
      short events = POLLIN;  // the peer's close, control frames, or (pipe) its doorbell
      if (!out_[peer]->pipe && (!sends_[peer].empty() || !cleared_[peer].empty())) {
        events |= POLLOUT;
      }
      fds.push_back({out_[peer]->socket.fd(), events, 0});
    }
  }
  const timespec ts{static_cast<time_t>(wait.count() / 1'000'000),
                    static_cast<long>(wait.count() % 1'000'000) * 1000};
  (void)::ppoll(fds.data(), fds.size(), &ts, nullptr);
}

void Messenger::step(std::vector<Completion>& done, bool check_sockets) {
  const int size = options_.size;
  if (acceptor_ && check_sockets) {
    for (auto& accepted : acceptor_->take()) {
      auto link = std::make_unique<Link>();
      link->socket = std::move(accepted.socket);
      link->pipe = std::move(accepted.pipe);
      in_[accepted.peer] = std::move(link);
    }
  }
  for (int peer = 0; peer < size; ++peer) {
    try {
      if (in_[peer] && in_[peer]->socket.valid()) {
        if (in_[peer]->pipe || check_sockets) read_incoming(peer, done, check_sockets);
        if (in_[peer] && !in_[peer]->control_out.empty()) flush_control(peer);
      }
      // Spinning, a sender waiting to be cleared still looks at its pipe's reverse ring.
      if (!check_sockets && out_[peer] && out_[peer]->pipe && out_[peer]->socket.valid() &&
          !announced_[peer].empty()) {
        read_back(peer);
      }
      if (check_sockets && out_[peer] && out_[peer]->socket.valid()) {
        // Only control frames and doorbells come back on a sending connection: EOF means
        // closed.
        if (!read_control(peer)) {
          const SendOp* pending = !announced_[peer].empty() ? announced_[peer].front().get()
                                  : !cleared_[peer].empty() ? cleared_[peer].front().get()
                                  : !sends_[peer].empty()   ? sends_[peer].front().get()
                                  : !remote_wait_[peer].empty() ? remote_wait_[peer].front().get()
                                                                : nullptr;
          if (pending != nullptr) {
            throw core::error_at(ErrorKind::peer_failure, me(), global(peer),
                                 "{}: rank {} closed its end of the connection (it exited, "
                                 "crashed or was killed) while this rank's send of {} bytes "
                                 "(tag {}) to it was not done",
                                 options_.purpose, global(peer), pending->bytes, pending->tag);
          }
          out_[peer].reset();
        }
      }
      if (check_sockets || (out_[peer] && out_[peer]->pipe)) progress_sends(peer, done);
    } catch (const Error& e) {
      // fail_peer() puts this rank's prefix back on.
      std::string why = e.what();
      if (const auto own = fmt::format("rank {}: ", me()); why.starts_with(own)) {
        why.erase(0, own.size());
      }
      fail_peer(peer, why, done);
    } catch (const std::exception& e) {
      fail_peer(peer, fmt::format("{}: rank {}: {}", options_.purpose, global(peer), e.what()),
                done);
    }
  }
}

void Messenger::set_sleeping(bool sleeping) {
  for (int peer = 0; peer < options_.size; ++peer) {
    if (in_[peer] && in_[peer]->pipe && in_[peer]->socket.valid()) {
      in_[peer]->pipe->set_reader_sleeping(sleeping);
    }
    if (out_[peer] && out_[peer]->pipe && out_[peer]->socket.valid()) {
      out_[peer]->pipe->set_writer_sleeping(sleeping && (!sends_[peer].empty() ||
                                                         !cleared_[peer].empty() ||
                                                         !announced_[peer].empty() ||
                                                         !remote_wait_[peer].empty()));
    }
  }
}

bool Messenger::has_pipes() const {
  for (int peer = 0; peer < options_.size; ++peer) {
    if ((in_[peer] && in_[peer]->pipe) || (out_[peer] && out_[peer]->pipe)) return true;
  }
  return false;
}

void Messenger::progress(std::chrono::microseconds wait, std::vector<Completion>& done) {
  const std::size_t before = done.size();
  done.insert(done.end(), finished_.begin(), finished_.end());
  finished_.clear();
  match_unexpected(done);
  step(done, true);
  if (done.size() == before && wait.count() > 0 && busy()) {
    // Shared-memory rings have no file descriptor: spin on them a little (a message between
    // two cores takes well under a microsecond), then announce the sleep in each pipe, look
    // once more, and sleep in poll() until a doorbell, a socket or the timeout.
    if (has_pipes() && oversubscribed_) {
      for (int i = 0; i < kOversubscribedYields && done.size() == before && busy(); ++i) {
        ::sched_yield();
        step(done, false);
      }
    } else if (has_pipes()) {
      const auto spin_until = Clock::now() + options_.spin;
      for (unsigned i = 0; done.size() == before && busy(); ++i) {
        step(done, false);
        if ((i & 63) == 63 && Clock::now() > spin_until) break;
      }
    }
    if (done.size() == before) {
      set_sleeping(true);
      step(done, false);
      if (done.size() == before) poll_once(wait);
      set_sleeping(false);
      step(done, true);
    }
  }
  check_deadlines(done);
}

std::vector<RecvStatus> Messenger::run(std::span<const P2POp> ops) {
  std::vector<OpId> ids;
  std::vector<int> recv_slot;  // by op: its place among the receives, or -1
  int receives = 0;
  try {
    for (const auto& op : ops) {
      const std::size_t bytes = op.count * element_size(op.type);
      if (op.kind == P2POp::Kind::send) {
        ids.push_back(post_send(op.data, bytes, op.peer, op.tag));
        recv_slot.push_back(-1);
      } else {
        ids.push_back(post_recv(op.data, bytes, element_size(op.type), op.peer, op.tag));
        recv_slot.push_back(receives++);
      }
    }
  } catch (...) {
    for (const OpId id : ids) cancel(id);
    throw;
  }
  std::vector<RecvStatus> statuses(static_cast<std::size_t>(receives));
  std::vector<bool> pending(ids.size(), true);
  std::size_t left = ids.size();
  std::optional<Error> first;
  std::vector<Completion> done;
  const auto index_of = [&](OpId id) {
    return static_cast<std::size_t>(std::find(ids.begin(), ids.end(), id) - ids.begin());
  };
  while (left > 0) {
    done.clear();
    progress(std::chrono::milliseconds(100), done);
    for (const auto& completion : done) {
      const std::size_t index = index_of(completion.id);
      if (index >= ids.size() || !pending[index]) continue;  // another caller's op
      pending[index] = false;
      --left;
      if (completion.error) {
        if (!first) first = completion.error;
      } else if (recv_slot[index] >= 0) {
        statuses[static_cast<std::size_t>(recv_slot[index])] = completion.status;
      }
    }
    if (first) {
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (pending[i] && cancel(ids[i])) {
          pending[i] = false;
          --left;
        }
      }
    }
  }
  if (first) throw *first;
  return statuses;
}

}  // namespace ringfuse::p2p
