// The store server: one io_context on one background thread owns all state, so the key-value
// map, the parked waiters and the sessions need no locks. Waits are served here, not by client
// polling: a get/wait that cannot be answered yet is parked until a set/add supplies its keys or
// its timer fires.
//
// Anyone who can reach the port can connect, so what a stranger costs is bounded before the
// handshake: connections that have not authenticated are capped per remote address and
// overall (past a cap the oldest is dropped, so a flood cannot lock out a rank that connects
// after it), each must authenticate within a few seconds of connecting, and the warnings they
// cause are rate-limited.
//
// Shutting down is orderly, so that a client connecting or authenticating at that moment is
// told the store is closing instead of meeting a reset it would read as a broken or foreign
// server: no new connection is let in, the ones the kernel has already queued are accepted, and
// every connection gets a CLOSING notice before it is closed.
#include <linux/filter.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/thread_name.hpp"
#include "rendezvous/auth.hpp"
#include "rendezvous/framing.hpp"
#include "rendezvous/tcp_store.hpp"
#include "rendezvous/warning_limiter.hpp"
#include "ringfuse/error.hpp"
#include "store.pb.h"

namespace ringfuse::rendezvous {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {
/// Largest frame accepted before a connection has authenticated: a hello (16-byte nonce) or an
/// auth (32-byte proof) request is well under 100 bytes.
constexpr std::uint32_t kMaxHandshakeFrameBytes = 1024;
/// Connections not yet authenticated, from one remote address and from all. A rank
/// authenticates within a round trip of connecting, so only ranks starting together on one
/// host come near the first cap; a scanner or a flood hits it.
constexpr std::size_t kMaxPendingPerAddress = 128;
constexpr std::size_t kMaxPending = 512;
/// From accept to a completed handshake. A Ringfuse client sends its hello as it connects, so
/// this only ever closes connections that are idle or trickle bytes.
constexpr std::chrono::seconds kHandshakeDeadline{5};
/// Warnings a stranger can cause: this many per interval, then one line counting the rest.
constexpr std::size_t kWarningBurst = 10;
constexpr std::chrono::seconds kWarningInterval{10};
/// Pause before accepting again after accept() failed (EMFILE: out of descriptors), so a
/// failing accept neither spins nor logs in a loop.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
/// How long a shutting-down server waits, after the CLOSING notice, for a client whose last
/// bytes it has not read to hang up, before it closes the connection anyway (the destructor
/// waits this long at most).
constexpr std::chrono::seconds kCloseGrace{2};
}  // namespace

class TcpStoreServer::Impl {
 public:
  Impl(std::string host, std::uint16_t port, std::string secret);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  std::uint16_t port() const { return port_; }
  const std::string& host() const { return host_; }
  void set_here(std::string key, std::string value);

 private:
  struct Session {
    explicit Session(tcp::socket s)
        : socket(std::move(s)), handshake_deadline(socket.get_executor()) {}
    tcp::socket socket;
    std::string remote;
    std::string address;  // the remote IP alone: what the pending caps count by
    asio::steady_timer handshake_deadline;
    bool pending = false;  // in pending_ (connected, not authenticated, not closed)
    std::list<std::shared_ptr<Session>>::iterator pending_position;
    framing::Header header{};
    std::string body;
    std::deque<std::string> outbox;  // frames queued behind the one being written
    bool open = true;
    std::unordered_set<std::uint64_t> waiters;  // parked requests to drop if the client leaves
    std::string client_nonce;                   // set by its hello
    std::string server_nonce;
    bool authenticated = false;
  };
  using SessionPtr = std::shared_ptr<Session>;

  struct Waiter {
    Waiter(asio::io_context& io, SessionPtr s) : session(std::move(s)), timer(io) {}
    SessionPtr session;
    std::uint64_t request_id = 0;
    bool is_get = false;                     // get answers with the value, wait with nothing
    std::vector<std::string> keys;           // in request order, for the timeout message
    std::unordered_set<std::string> missing;
    std::chrono::milliseconds timeout{0};
    asio::steady_timer timer;
  };

  void accept_next();
  void start_session(tcp::socket socket);
  void read_header(const SessionPtr& session);
  void read_body(const SessionPtr& session);
  void reject(const SessionPtr& session, const std::string& why);
  void close(const SessionPtr& session);
  /// Counts a new connection as pending, dropping the oldest pending one first when a cap is
  /// reached, and starts its handshake deadline.
  void admit_pending(const SessionPtr& session);
  void leave_pending(const SessionPtr& session);
  /// A warning line through the budget; the rest are counted and summarised.
  void warn(std::string what);
  void log_suppressed();
  void send(const SessionPtr& session, const wire::Response& response);
  void write_next(const SessionPtr& session);

  void handle(const SessionPtr& session, const wire::Request& request);
  void handle_add(const SessionPtr& session, const wire::Request& request,
                  wire::Response& response);
  void park(const SessionPtr& session, std::uint64_t request_id, bool is_get,
            std::vector<std::string> keys, std::int64_t timeout_ms);
  void key_present(const std::string& key);
  void complete(std::uint64_t waiter_id);
  void expire(std::uint64_t waiter_id);
  std::unique_ptr<Waiter> take_waiter(std::uint64_t waiter_id);
  void shut_down();
  /// Lets no new connection in, then accepts those already queued in the kernel (closing the
  /// listening socket would reset them: their clients would report a lost connection).
  void stop_accepting();
  /// Sends a connection the CLOSING notice; once it is written the connection is closed
  /// (write_next), or, while input from the client is unread, shut for sending until the
  /// client hangs up or kCloseGrace passes.
  void say_closing(const SessionPtr& session);
  /// While closing: reads and drops what a client still sends until it hangs up (closing a
  /// socket with unread input resets it, and the reset can overtake the notice).
  void drain(const SessionPtr& session);
  /// Handles hello/auth; returns false when the request was not part of authentication.
  bool authenticate(const SessionPtr& session, const wire::Request& request);

  std::string host_;
  std::string secret_;
  std::uint16_t port_ = 0;
  std::string address_;  // host:port, for log lines
  asio::io_context io_{1};
  tcp::acceptor acceptor_{io_};
  std::unordered_set<SessionPtr> sessions_;
  std::list<SessionPtr> pending_;  // not yet authenticated, oldest first
  std::unordered_map<std::string, std::size_t> pending_per_address_;
  WarningLimiter warnings_{kWarningBurst, kWarningInterval};
  std::string last_suppressed_;  // the latest warning not logged, for the summary
  asio::steady_timer summary_timer_{io_};
  bool summary_armed_ = false;
  asio::steady_timer accept_retry_{io_};
  std::unordered_map<std::string, std::string> data_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Waiter>> waiters_;
  // key -> parked waiters still missing it, so a set touches only the waiters that care.
  std::unordered_map<std::string, std::vector<std::uint64_t>> waiting_on_;
  std::uint64_t next_waiter_id_ = 1;
  bool closing_ = false;  // shut_down() began: no request is served any more
  asio::steady_timer close_grace_{io_};
  std::array<char, 512> discarded_{};  // drain()'s target: what arrives while closing is dropped
  std::thread thread_;  // last: started once everything above exists
};

TcpStoreServer::Impl::Impl(std::string host, std::uint16_t port, std::string secret)
    : host_(std::move(host)), secret_(std::move(secret)) {
  address_ = framing::address_string(host_, port);
  tcp::endpoint endpoint;
  error_code ec;
  const auto address = asio::ip::make_address(host_, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, port);
  } else {
    // A host name (e.g. "localhost"): bind to what it resolves to first.
    tcp::resolver resolver(io_);
    const auto results = resolver.resolve(host_, std::to_string(port), ec);
    if (ec || results.empty()) {
      throw Error(ErrorKind::system,
                  fmt::format("rendezvous store {}: cannot resolve host '{}' to bind to ({}); "
                              "pass a local IP address or a name this machine resolves",
                              address_, host_, ec ? ec.message() : "no addresses"));
    }
    endpoint = results.begin()->endpoint();
  }

  const auto fail = [&](std::string_view step) {
    const auto hint = ec == asio::error::address_in_use
                          ? "choose another port or stop the process that holds it"
                          : "check that the host is an address of this machine";
    throw Error(ErrorKind::system, fmt::format("rendezvous store {}: cannot {} ({}); {}",
                                               address_, step, ec.message(), hint));
  };
  if (acceptor_.open(endpoint.protocol(), ec)) fail("open a socket");
  // Lets a restarted launcher reuse its port while old connections sit in TIME_WAIT.
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor_.bind(endpoint, ec)) fail("bind");
  if (acceptor_.listen(asio::socket_base::max_listen_connections, ec)) fail("listen");
  port_ = acceptor_.local_endpoint().port();
  address_ = framing::address_string(host_, port_);

  accept_next();
  auth::initialise();  // before the io thread authenticates anyone (see auth.hpp)
  thread_ = std::thread([this] {
    core::name_this_thread("rf-store");
    // Handlers never throw by construction; a failure here would be a bug, and letting it
    // escape the thread would terminate the process without a word.
    try {
      io_.run();
    } catch (const std::exception& e) {
      spdlog::error("rendezvous store {}: server thread stopped: {}", address_, e.what());
    }
  });
  spdlog::debug("rendezvous store {}: serving", address_);
}

TcpStoreServer::Impl::~Impl() {
  // Closing runs on the io thread (it owns the state); the thread stops once every client has
  // been sent the notice and its connection closed (within kCloseGrace), so clients learn that
  // the store is closing instead of hanging on a half-dead server or meeting a bare reset.
  asio::post(io_, [this] { shut_down(); });
  thread_.join();
}

void TcpStoreServer::Impl::shut_down() {
  closing_ = true;
  stop_accepting();
  accept_retry_.cancel();
  summary_timer_.cancel();
  log_suppressed();
  for (auto& [id, waiter] : waiters_) waiter->timer.cancel();
  waiters_.clear();
  waiting_on_.clear();
  for (const auto& session : sessions_) say_closing(session);
  close_grace_.expires_after(kCloseGrace);
  close_grace_.async_wait([this](error_code) {
    for (const auto& session : std::vector<SessionPtr>(sessions_.begin(), sessions_.end())) {
      close(session);
    }
    io_.stop();
  });
  if (sessions_.empty()) close_grace_.cancel();
}

void TcpStoreServer::Impl::stop_accepting() {
  // A filter that drops every packet addressed to the listening socket completes no new
  // handshake (a client's SYN goes unanswered; its retry finds the port closed, and is
  // refused), so the queue of completed connections cannot grow while we empty it below.
  sock_filter drop_all = BPF_STMT(BPF_RET | BPF_K, 0);
  const sock_fprog program{1, &drop_all};
  if (::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_ATTACH_FILTER, &program,
                   sizeof(program)) != 0) {
    spdlog::debug("rendezvous store {}: cannot filter the listening socket while closing ({}); "
                  "a client connecting at this moment may see its connection reset",
                  address_, std::strerror(errno));
  }
  error_code ec;
  acceptor_.non_blocking(true, ec);
  while (!ec) {
    tcp::socket socket(io_);
    acceptor_.accept(socket, ec);
    if (!ec) start_session(std::move(socket));
  }
  acceptor_.close(ec);
}

void TcpStoreServer::Impl::say_closing(const SessionPtr& session) {
  leave_pending(session);
  session->waiters.clear();  // waiters_ is gone: none will be answered
  wire::Response notice;
  notice.set_id(0);
  auto* error = notice.mutable_error();
  error->set_code(wire::ErrorResponse::CLOSING);
  error->set_message("the store is shutting down: its host (ringfuse-run, or rank 0) is exiting, "
                     "so the job it served has ended or given up");
  send(session, notice);
}

void TcpStoreServer::Impl::drain(const SessionPtr& session) {
  session->socket.async_read_some(asio::buffer(discarded_),
                                  [this, session](error_code ec, std::size_t) {
                                    if (!session->open) return;
                                    if (ec) {
                                      close(session);
                                      return;
                                    }
                                    drain(session);
                                  });
}

void TcpStoreServer::Impl::accept_next() {
  acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
    if (closing_) {
      // Accepted just before shut_down() closed the acceptor: it is told, like the others.
      if (!ec) start_session(std::move(socket));
      return;
    }
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // E.g. EMFILE: keep serving the connections we have, and try again shortly.
      warn(fmt::format("accept failed: {}; trying again in {} ms", ec.message(),
                       kAcceptRetryDelay.count()));
      accept_retry_.expires_after(kAcceptRetryDelay);
      accept_retry_.async_wait([this](error_code wait_ec) {
        if (!wait_ec && acceptor_.is_open()) accept_next();
      });
      return;
    }
    start_session(std::move(socket));
    accept_next();
  });
}

void TcpStoreServer::Impl::start_session(tcp::socket socket) {
  framing::tune_socket(socket);
  auto session = std::make_shared<Session>(std::move(socket));
  error_code ec;
  const auto remote = session->socket.remote_endpoint(ec);
  session->remote = ec ? std::string("unknown peer") : framing::to_string(remote);
  session->address = ec ? std::string("unknown peer") : remote.address().to_string();
  sessions_.insert(session);
  admit_pending(session);
  read_header(session);
  if (closing_) say_closing(session);
}

void TcpStoreServer::Impl::admit_pending(const SessionPtr& session) {
  if (pending_per_address_[session->address] >= kMaxPendingPerAddress) {
    // A copy: closing it erases the list element.
    const SessionPtr oldest = *std::find_if(
        pending_.begin(), pending_.end(),
        [&](const SessionPtr& other) { return other->address == session->address; });
    warn(fmt::format("more than {} connections from {} have not authenticated; closing the "
                     "oldest, {} (a scan or a flood from that address?)",
                     kMaxPendingPerAddress, session->address, oldest->remote));
    close(oldest);
  } else if (pending_.size() >= kMaxPending) {
    const SessionPtr oldest = pending_.front();
    warn(fmt::format("more than {} connections have not authenticated; closing the oldest, {} "
                     "(a scan or a flood?)",
                     kMaxPending, oldest->remote));
    close(oldest);
  }
  ++pending_per_address_[session->address];
  session->pending_position = pending_.insert(pending_.end(), session);
  session->pending = true;
  session->handshake_deadline.expires_after(kHandshakeDeadline);
  session->handshake_deadline.async_wait([this, session](error_code ec) {
    if (ec || !session->open || session->authenticated) return;
    warn(fmt::format("closed the connection from {}: it did not authenticate within {} s of "
                     "connecting (is something other than a Ringfuse rank connecting to the "
                     "store port?)",
                     session->remote, kHandshakeDeadline.count()));
    close(session);
  });
}

void TcpStoreServer::Impl::leave_pending(const SessionPtr& session) {
  if (!session->pending) return;
  session->pending = false;
  session->handshake_deadline.cancel();
  pending_.erase(session->pending_position);
  const auto count = pending_per_address_.find(session->address);
  if (count != pending_per_address_.end() && --count->second == 0) {
    pending_per_address_.erase(count);
  }
}

void TcpStoreServer::Impl::warn(std::string what) {
  if (warnings_.admit(WarningLimiter::Clock::now())) {
    spdlog::warn("rendezvous store {}: {}", address_, what);
    return;
  }
  last_suppressed_ = std::move(what);
  if (summary_armed_) return;
  summary_armed_ = true;
  summary_timer_.expires_at(warnings_.interval_end());
  summary_timer_.async_wait([this](error_code ec) {
    summary_armed_ = false;
    if (!ec) log_suppressed();
  });
}

void TcpStoreServer::Impl::log_suppressed() {
  const std::size_t count = warnings_.take_suppressed();
  if (count == 0) return;
  spdlog::warn("rendezvous store {}: {} more warning{} in the last {} s not logged one by one "
               "(the latest: {})",
               address_, count, count == 1 ? "" : "s",
               std::chrono::duration_cast<std::chrono::seconds>(warnings_.interval()).count(),
               last_suppressed_);
}

void TcpStoreServer::Impl::read_header(const SessionPtr& session) {
  asio::async_read(session->socket, asio::buffer(session->header),
                   [this, session](error_code ec, std::size_t) {
                     if (!session->open) return;
                     if (closing_) {
                       ec ? close(session) : drain(session);
                       return;
                     }
                     if (ec) {
                       if (ec != asio::error::eof)
                         spdlog::debug("rendezvous store {}: client {} left: {}", address_,
                                       session->remote, ec.message());
                       close(session);
                       return;
                     }
                     const auto length = framing::decode_length(session->header);
                     // Before authenticating only hello and auth are legal, and both are
                     // tiny: a stranger must not make us set aside up to kMaxFrameBytes per
                     // connection and wait for the body.
                     const auto limit = session->authenticated ? framing::kMaxFrameBytes
                                                               : kMaxHandshakeFrameBytes;
                     if (length > limit) {
                       reject(session, fmt::format("frame of {} bytes exceeds the {} byte limit{}",
                                                   length, limit,
                                                   session->authenticated
                                                       ? ""
                                                       : " before authentication"));
                       return;
                     }
                     session->body.resize(length);
                     read_body(session);
                   });
}

void TcpStoreServer::Impl::read_body(const SessionPtr& session) {
  asio::async_read(
      session->socket, asio::buffer(session->body), [this, session](error_code ec, std::size_t) {
        if (!session->open) return;
        if (closing_) {
          ec ? close(session) : drain(session);
          return;
        }
        if (ec) {
          reject(session, fmt::format("connection ended inside a {} byte message ({})",
                                      session->body.size(), ec.message()));
          return;
        }
        wire::Request request;
        if (!request.ParseFromString(session->body)) {
          reject(session, "message is not a valid store request");
          return;
        }
        if (request.op_case() == wire::Request::OP_NOT_SET) {
          reject(session, "request names no operation");
          return;
        }
        session->body.clear();
        session->body.shrink_to_fit();  // a one-off large value should not stay resident
        handle(session, request);
        if (session->open) read_header(session);
      });
}

void TcpStoreServer::Impl::reject(const SessionPtr& session, const std::string& why) {
  warn(fmt::format("rejected input from {}: {}; closing that connection (is something other "
                   "than a Ringfuse rank connecting to the store port?)",
                   session->remote, why));
  close(session);
}

void TcpStoreServer::Impl::close(const SessionPtr& session) {
  if (!session->open) return;
  session->open = false;
  leave_pending(session);
  for (const auto id : std::vector<std::uint64_t>(session->waiters.begin(),
                                                  session->waiters.end())) {
    take_waiter(id);
  }
  error_code ignored;
  session->socket.shutdown(tcp::socket::shutdown_both, ignored);
  session->socket.close(ignored);
  sessions_.erase(session);
  if (closing_ && sessions_.empty()) close_grace_.cancel();  // everyone has hung up
}

void TcpStoreServer::Impl::send(const SessionPtr& session, const wire::Response& response) {
  if (!session->open) return;
  const bool idle = session->outbox.empty();
  session->outbox.push_back(framing::encode(response));
  if (idle) write_next(session);
}

void TcpStoreServer::Impl::write_next(const SessionPtr& session) {
  asio::async_write(session->socket, asio::buffer(session->outbox.front()),
                    [this, session](error_code ec, std::size_t) {
                      if (!session->open) return;
                      if (ec) {
                        spdlog::debug("rendezvous store {}: write to {} failed: {}", address_,
                                      session->remote, ec.message());
                        close(session);
                        return;
                      }
                      session->outbox.pop_front();
                      if (!session->outbox.empty()) {
                        write_next(session);
                      } else if (closing_) {
                        // The notice is out. With no input left unread, closing now puts an
                        // orderly end of stream behind it; with some, closing would reset
                        // the connection, and the reset can overtake the notice, so the
                        // client gets the end of stream and until kCloseGrace to hang up.
                        error_code ignored;
                        if (session->socket.available(ignored) == 0) {
                          close(session);
                        } else {
                          session->socket.shutdown(tcp::socket::shutdown_send, ignored);
                        }
                      }
                    });
}

bool TcpStoreServer::Impl::authenticate(const SessionPtr& session, const wire::Request& request) {
  wire::Response response;
  response.set_id(request.id());
  if (request.op_case() == wire::Request::kHello && session->server_nonce.empty()) {
    session->client_nonce = request.hello().client_nonce();
    session->server_nonce = auth::random_nonce();
    auto* challenge = response.mutable_challenge();
    challenge->set_server_nonce(session->server_nonce);
    challenge->set_server_proof(
        auth::proof(secret_, "store-server", session->client_nonce, session->server_nonce));
    send(session, response);
    return true;
  }
  if (request.op_case() == wire::Request::kAuth && !session->server_nonce.empty() &&
      auth::proofs_equal(request.auth().client_proof(),
                         auth::proof(secret_, "store-client", session->server_nonce,
                                     session->client_nonce))) {
    session->authenticated = true;
    leave_pending(session);
    response.mutable_auth();
    send(session, response);
    return true;
  }
  return false;
}

void TcpStoreServer::Impl::handle(const SessionPtr& session, const wire::Request& request) {
  if (!session->authenticated) {
    if (!authenticate(session, request)) {
      reject(session, request.op_case() == wire::Request::kAuth
                          ? "wrong job secret (its RINGFUSE_JOB_SECRET differs from this job's)"
                          : "it did not authenticate first");
    }
    return;
  }
  wire::Response response;
  response.set_id(request.id());
  switch (request.op_case()) {
    case wire::Request::kSet: {
      const auto& op = request.set();
      const bool is_new = data_.insert_or_assign(op.key(), op.value()).second;
      response.mutable_set();
      send(session, response);
      if (is_new) key_present(op.key());
      return;
    }
    case wire::Request::kGet: {
      const auto& op = request.get();
      if (const auto it = data_.find(op.key()); it != data_.end()) {
        response.mutable_get()->set_value(it->second);
        send(session, response);
      } else {
        park(session, request.id(), true, {op.key()}, op.timeout_ms());
      }
      return;
    }
    case wire::Request::kWait: {
      const auto& op = request.wait();
      std::vector<std::string> keys(op.keys().begin(), op.keys().end());
      bool all = true;
      for (const auto& key : keys) all = all && data_.contains(key);
      if (all) {
        response.mutable_wait();
        send(session, response);
      } else {
        park(session, request.id(), false, std::move(keys), op.timeout_ms());
      }
      return;
    }
    case wire::Request::kAdd:
      handle_add(session, request, response);
      return;
    case wire::Request::kRemove:
      response.mutable_remove()->set_existed(data_.erase(request.remove().key()) > 0);
      send(session, response);
      return;
    case wire::Request::kCheck: {
      bool all = true;
      for (const auto& key : request.check().keys()) all = all && data_.contains(key);
      response.mutable_check()->set_all_present(all);
      send(session, response);
      return;
    }
    case wire::Request::kHello:
    case wire::Request::kAuth:
    case wire::Request::OP_NOT_SET:
      break;
  }
  reject(session, "request names no operation");
}

void TcpStoreServer::Impl::handle_add(const SessionPtr& session, const wire::Request& request,
                                      wire::Response& response) {
  const auto& op = request.add();
  std::int64_t current = 0;
  const auto it = data_.find(op.key());
  if (it != data_.end()) {
    const auto& text = it->second;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), current);
    if (ec != std::errc{} || end != text.data() + text.size()) {
      auto* error = response.mutable_error();
      error->set_code(wire::ErrorResponse::INVALID_ARGUMENT);
      error->set_message(fmt::format(
          "add on key '{}': its value ({} bytes) is not a decimal integer; use a separate key "
          "for counters",
          op.key(), text.size()));
      send(session, response);
      return;
    }
  }
  std::int64_t result = 0;
  if (__builtin_add_overflow(current, op.delta(), &result)) {
    auto* error = response.mutable_error();
    error->set_code(wire::ErrorResponse::INVALID_ARGUMENT);
    error->set_message(fmt::format("add on key '{}': {} + {} overflows a 64-bit integer",
                                   op.key(), current, op.delta()));
    send(session, response);
    return;
  }
  const bool is_new = it == data_.end();
  data_[op.key()] = std::to_string(result);
  response.mutable_add()->set_value(result);
  send(session, response);
  if (is_new) key_present(op.key());
}

void TcpStoreServer::Impl::park(const SessionPtr& session, std::uint64_t request_id,
                                bool is_get, std::vector<std::string> keys,
                                std::int64_t timeout_ms) {
  const auto id = next_waiter_id_++;
  auto waiter = std::make_unique<Waiter>(io_, session);
  waiter->request_id = request_id;
  waiter->is_get = is_get;
  for (const auto& key : keys) {
    if (!data_.contains(key) && waiter->missing.insert(key).second) waiting_on_[key].push_back(id);
  }
  waiter->keys = std::move(keys);
  // The timeout comes off the wire: clamp it so a hostile or buggy value cannot overflow.
  waiter->timeout = std::chrono::milliseconds(
      std::clamp<std::int64_t>(timeout_ms, 0, framing::kMaxWait.count()));
  waiter->timer.expires_after(waiter->timeout);
  waiter->timer.async_wait([this, id](error_code ec) {
    if (!ec) expire(id);
  });
  session->waiters.insert(id);
  waiters_.emplace(id, std::move(waiter));
}

void TcpStoreServer::Impl::key_present(const std::string& key) {
  const auto node = waiting_on_.extract(key);
  if (node.empty()) return;
  for (const auto id : node.mapped()) {
    const auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    it->second->missing.erase(key);
    if (it->second->missing.empty()) complete(id);
  }
}

std::unique_ptr<TcpStoreServer::Impl::Waiter> TcpStoreServer::Impl::take_waiter(
    std::uint64_t waiter_id) {
  auto node = waiters_.extract(waiter_id);
  if (node.empty()) return nullptr;
  auto waiter = std::move(node.mapped());
  waiter->timer.cancel();
  waiter->session->waiters.erase(waiter_id);
  for (const auto& key : waiter->missing) {
    const auto it = waiting_on_.find(key);
    if (it == waiting_on_.end()) continue;
    std::erase(it->second, waiter_id);
    if (it->second.empty()) waiting_on_.erase(it);
  }
  return waiter;
}

void TcpStoreServer::Impl::complete(std::uint64_t waiter_id) {
  const auto waiter = take_waiter(waiter_id);
  if (!waiter) return;
  wire::Response response;
  response.set_id(waiter->request_id);
  if (waiter->is_get) {
    const auto it = data_.find(waiter->keys.front());
    response.mutable_get()->set_value(it == data_.end() ? std::string() : it->second);
  } else {
    response.mutable_wait();
  }
  send(waiter->session, response);
}

void TcpStoreServer::Impl::expire(std::uint64_t waiter_id) {
  const auto waiter = take_waiter(waiter_id);
  if (!waiter) return;
  wire::Response response;
  response.set_id(waiter->request_id);
  auto* timeout = response.mutable_timeout();
  timeout->set_timeout_ms(waiter->timeout.count());
  for (const auto& key : waiter->keys) {
    if (waiter->missing.contains(key)) timeout->add_missing_keys(key);
  }
  send(waiter->session, response);
}

void TcpStoreServer::Impl::set_here(std::string key, std::string value) {
  // The io thread owns the data; a server already closing has no one left to tell.
  asio::post(io_, [this, key = std::move(key), value = std::move(value)]() mutable {
    if (closing_) return;
    if (data_.insert_or_assign(key, std::move(value)).second) key_present(key);
  });
}

TcpStoreServer::TcpStoreServer(const std::string& host, std::uint16_t port, std::string secret)
    : impl_(std::make_unique<Impl>(host, port, std::move(secret))) {}

TcpStoreServer::~TcpStoreServer() = default;

std::uint16_t TcpStoreServer::port() const { return impl_->port(); }

const std::string& TcpStoreServer::host() const { return impl_->host(); }

void TcpStoreServer::set(const std::string& key, std::string_view value) {
  impl_->set_here(key, std::string(value));
}

}  // namespace ringfuse::rendezvous
