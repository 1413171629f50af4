// The store client. Calls are synchronous for the caller, but every network step runs as an
// async operation on a private io_context driven with a deadline, so a dead or silent server
// becomes an Error within a bounded time instead of a hang.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "rendezvous/auth.hpp"
#include "rendezvous/framing.hpp"
#include "rendezvous/tcp_store.hpp"
#include "ringfuse/error.hpp"
#include "store.pb.h"

namespace ringfuse::rendezvous {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

/// Bound on a request that does not wait for keys: far above any healthy round trip, short
/// enough that a wedged server is reported while someone is still watching.
constexpr milliseconds kRequestTimeout{30'000};
/// Extra time a get/wait gives the server beyond the caller's timeout, so the server's own
/// timeout reply (which names the missing keys) normally arrives before the network deadline.
constexpr milliseconds kWaitMargin{5'000};
constexpr milliseconds kFirstBackoff{20};
constexpr milliseconds kMaxBackoff{1'000};
/// Room left in a frame for the response's own fields, so a value that fits in a set request
/// also fits in the get response that returns it.
constexpr std::size_t kResponseMargin = 4096;
constexpr std::size_t kMaxKeysListed = 16;

milliseconds clamp_wait(milliseconds timeout) {
  return std::clamp(timeout, milliseconds{0}, framing::kMaxWait);
}

std::string quoted(const std::string& key) { return fmt::format("'{}'", key); }

std::string key_list(const google::protobuf::RepeatedPtrField<std::string>& keys) {
  std::string text = "[";
  const auto shown = std::min<std::size_t>(keys.size(), kMaxKeysListed);
  for (std::size_t i = 0; i < shown; ++i) {
    if (i > 0) text += ", ";
    text += keys[static_cast<int>(i)];
  }
  if (static_cast<std::size_t>(keys.size()) > shown)
    text += fmt::format(", ... and {} more", keys.size() - shown);
  return text + "]";
}

}  // namespace

class TcpStoreClient::Impl {
 public:
  Impl(std::string host, std::uint16_t port, milliseconds connect_timeout,
       const std::string& secret);

  /// Sends `request` and returns the matching response; throws on transport failure. A timeout
  /// or error *reply* is returned, and turned into an Error by expect().
  wire::Response call(wire::Request& request, milliseconds network_timeout,
                      const std::string& what);
  /// Throws the Error a timeout/error reply stands for, or a protocol error when the reply is
  /// not of the kind `request` asked for.
  void expect(const wire::Response& response, wire::Response::ResultCase expected,
              const std::string& what);

  const std::string& local_address() const { return local_address_; }
  int connection_handle() { return socket_.native_handle(); }

 private:
  error_code try_connect(Clock::time_point deadline);
  /// Proves the job secret to the server and checks the server's proof (auth.hpp). Returns
  /// false when the server closed the connection without answering the first message: it may
  /// be shutting down (the caller tries again, and a refusal then says it has gone).
  bool authenticate(const std::string& secret);
  /// Runs the io_context until `done` or `deadline`. On the deadline it closes the socket and
  /// drains the aborted handlers (they reference the caller's stack), then returns false.
  bool run_until(const bool& done, Clock::time_point deadline);
  [[noreturn]] void fail(ErrorKind kind, const std::string& message);

  std::string host_;
  std::uint16_t port_;
  std::string address_;
  std::string local_address_;
  asio::io_context io_{1};
  tcp::socket socket_{io_};
  std::mutex mutex_;  // one request/response exchange at a time on the one connection
  std::uint64_t next_id_ = 1;
  std::string lost_;  // why the connection became unusable; empty while it is fine
  bool connection_lost_ = false;  // the last failed call lost the connection (not a bad reply)
};

TcpStoreClient::Impl::Impl(std::string host, std::uint16_t port, milliseconds connect_timeout,
                           const std::string& secret)
    : host_(std::move(host)), port_(port), address_(framing::address_string(host_, port)) {
  const auto timeout = clamp_wait(connect_timeout);
  const auto deadline = Clock::now() + timeout;
  auto backoff = kFirstBackoff;
  std::string last_error;
  // A connection was accepted and closed without an answer: the server was there, and may
  // be shutting down (a connection it had queued but never served).
  bool closed_unanswered = false;
  for (;;) {
    // Every failure is retried, not only "refused": in a fresh pod the name may not resolve
    // yet, and the route may appear late.
    const auto ec = try_connect(deadline);
    if (!ec) {
      framing::tune_socket(socket_);
      error_code local_ec;
      const auto local = socket_.local_endpoint(local_ec);
      if (local_ec) {
        fail(ErrorKind::system,
             fmt::format("cannot read the local address ({})", local_ec.message()));
      }
      local_address_ = local.address().to_string();
      if (authenticate(secret)) break;
      closed_unanswered = true;
      last_error = "the server accepted the connection and closed it without answering";
    } else if (closed_unanswered && ec == asio::error::connection_refused) {
      throw StoreClosingError(fmt::format(
          "rendezvous store {}: the server closed this process's connection without answering "
          "and now refuses connections: it has shut down (its host, ringfuse-run or rank 0, "
          "exited), so the job it served has ended or given up",
          address_));
    } else if (ec != asio::error::timed_out || last_error.empty()) {
      // An attempt cut short by the deadline says less than the failure before it ("refused").
      last_error = ec.message();
    }
    const auto now = Clock::now();
    if (now >= deadline) {
      throw Error(ErrorKind::timeout,
                  fmt::format("rendezvous store {}: could not connect within {} (last error: "
                              "{}); is the store server (ringfuse-run or rank 0) running and "
                              "reachable at that address?",
                              address_, framing::seconds_string(timeout), last_error));
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

bool TcpStoreClient::Impl::authenticate(const std::string& secret) {
  connection_lost_ = false;
  const auto client_nonce = auth::random_nonce();
  wire::Request hello;
  hello.mutable_hello()->set_client_nonce(client_nonce);
  wire::Response challenge;
  try {
    challenge = call(hello, kRequestTimeout, "authenticate");
  } catch (const StoreClosingError&) {
    throw;
  } catch (const Error& e) {
    if (connection_lost_) {
      lost_.clear();  // the caller connects again
      connection_lost_ = false;
      return false;
    }
    throw Error(ErrorKind::peer_failure,
                fmt::format("{} (the server may not be a Ringfuse store of this version)",
                            e.what()));
  }
  if (challenge.result_case() != wire::Response::kChallenge ||
      !auth::proofs_equal(challenge.challenge().server_proof(),
                          auth::proof(secret, "store-server", client_nonce,
                                      challenge.challenge().server_nonce()))) {
    std::lock_guard lock(mutex_);
    fail(ErrorKind::peer_failure,
         "the server could not prove this job's secret: it belongs to another job, or "
         "RINGFUSE_JOB_SECRET differs between this process and the launcher");
  }
  wire::Request proof;
  proof.mutable_auth()->set_client_proof(auth::proof(secret, "store-client",
                                                     challenge.challenge().server_nonce(),
                                                     client_nonce));
  try {
    expect(call(proof, kRequestTimeout, "authenticate"), wire::Response::kAuth, "authenticate");
  } catch (const StoreClosingError&) {
    throw;  // the store went away while we authenticated: not a matter of secrets
  } catch (const Error& e) {
    throw Error(ErrorKind::peer_failure,
                fmt::format("{}: the store refused this process's job secret; set "
                            "RINGFUSE_JOB_SECRET to the job's (ringfuse-run passes it to its "
                            "ranks)",
                            e.what()));
  }
  return true;
}

error_code TcpStoreClient::Impl::try_connect(Clock::time_point deadline) {
  std::vector<tcp::endpoint> endpoints;
  error_code ec;
  const auto address = asio::ip::make_address(host_, ec);
  if (!ec) {
    endpoints.emplace_back(address, port_);
  } else {
    // getaddrinfo cannot be cancelled, so its handler gets its own state: if the deadline
    // passes first we walk away, and a late completion writes only into that state.
    struct Resolved {
      bool done = false;
      error_code ec;
      std::vector<tcp::endpoint> endpoints;
    };
    auto state = std::make_shared<Resolved>();
    tcp::resolver resolver(io_);
    resolver.async_resolve(host_, std::to_string(port_),
                           [state](error_code rec, const tcp::resolver::results_type& results) {
                             state->ec = rec;
                             for (const auto& entry : results)
                               state->endpoints.push_back(entry.endpoint());
                             state->done = true;
                           });
    io_.restart();
    while (!state->done && io_.run_one_until(deadline) > 0) {
    }
    if (!state->done) {
      resolver.cancel();
      return asio::error::timed_out;
    }
    if (state->ec) return state->ec;
    if (state->endpoints.empty()) return asio::error::host_not_found;
    endpoints = std::move(state->endpoints);
  }

  bool done = false;
  error_code connect_ec;
  asio::async_connect(socket_, endpoints, [&](error_code cec, const tcp::endpoint&) {
    connect_ec = cec;
    done = true;
  });
  if (!run_until(done, deadline)) return asio::error::timed_out;
  if (connect_ec) {
    error_code ignored;
    socket_.close(ignored);
  }
  return connect_ec;
}

bool TcpStoreClient::Impl::run_until(const bool& done, Clock::time_point deadline) {
  io_.restart();
  while (!done && io_.run_one_until(deadline) > 0) {
  }
  if (done) return true;
  error_code ignored;
  socket_.close(ignored);
  io_.restart();
  io_.run();
  return false;
}

void TcpStoreClient::Impl::fail(ErrorKind kind, const std::string& message) {
  // After a failed exchange the stream position is unknown, so the connection is unusable.
  lost_ = message;
  error_code ignored;
  socket_.close(ignored);
  throw Error(kind, fmt::format("rendezvous store {}: {}", address_, message));
}

wire::Response TcpStoreClient::Impl::call(wire::Request& request, milliseconds network_timeout,
                                          const std::string& what) {
  std::lock_guard lock(mutex_);
  if (!lost_.empty()) {
    throw Error(ErrorKind::peer_failure,
                fmt::format("rendezvous store {}: cannot {}: the connection failed earlier ({})",
                            address_, what, lost_));
  }
  request.set_id(next_id_++);
  const auto size = request.ByteSizeLong();
  if (size > framing::kMaxFrameBytes - kResponseMargin) {
    throw Error(ErrorKind::invalid_argument,
                fmt::format("rendezvous store {}: cannot {}: the request is {} bytes, over the "
                            "store's {} byte limit; the store is for addresses and small "
                            "metadata, send bulk data over the transport",
                            address_, what, size, framing::kMaxFrameBytes - kResponseMargin));
  }
  const auto frame = framing::encode(request);

  bool done = false;
  error_code ec;
  std::uint32_t oversized = 0;
  framing::Header header{};
  std::string body;
  asio::async_write(socket_, asio::buffer(frame), [&](error_code wec, std::size_t) {
    if (wec) {
      ec = wec;
      done = true;
      return;
    }
    asio::async_read(socket_, asio::buffer(header), [&](error_code hec, std::size_t) {
      if (hec) {
        ec = hec;
        done = true;
        return;
      }
      const auto length = framing::decode_length(header);
      if (length > framing::kMaxFrameBytes) {
        oversized = length;
        done = true;
        return;
      }
      body.resize(length);
      asio::async_read(socket_, asio::buffer(body), [&](error_code bec, std::size_t) {
        ec = bec;
        done = true;
      });
    });
  });

  if (!run_until(done, Clock::now() + network_timeout)) {
    fail(ErrorKind::peer_failure,
         fmt::format("no reply to {} within {}; the store server (ringfuse-run or rank 0) is "
                     "not answering: check that it is alive and reachable",
                     what, framing::seconds_string(network_timeout)));
  }
  if (ec) {
    connection_lost_ = true;
    fail(ErrorKind::peer_failure,
         fmt::format("connection lost during {} ({}); the store server (ringfuse-run or rank 0) "
                     "has exited or become unreachable, see its log for why",
                     what, ec.message()));
  }
  if (oversized > 0) {
    fail(ErrorKind::protocol,
         fmt::format("reply to {} announces {} bytes, over the {} byte limit; is {} really a "
                     "Ringfuse store?",
                     what, oversized, framing::kMaxFrameBytes, address_));
  }
  wire::Response response;
  if (!response.ParseFromString(body)) {
    fail(ErrorKind::protocol,
         fmt::format("reply to {} is not a valid store message; is {} really a Ringfuse store "
                     "of the same version?",
                     what, address_));
  }
  // Sent unasked with id 0, whatever we were waiting for: the server is going away.
  if (response.result_case() == wire::Response::kError &&
      response.error().code() == wire::ErrorResponse::CLOSING) {
    lost_ = response.error().message();
    error_code ignored;
    socket_.close(ignored);
    throw StoreClosingError(fmt::format("rendezvous store {}: cannot {}: {}", address_, what,
                                        response.error().message()));
  }
  if (response.id() != request.id()) {
    fail(ErrorKind::protocol, fmt::format("reply to {} carries id {} instead of {}; the store "
                                          "server is confused, restart the job",
                                          what, response.id(), request.id()));
  }
  return response;
}

void TcpStoreClient::Impl::expect(const wire::Response& response,
                                  wire::Response::ResultCase expected, const std::string& what) {
  if (response.result_case() == expected) return;
  if (response.result_case() == wire::Response::kTimeout) {
    const auto& timeout = response.timeout();
    throw Error(ErrorKind::timeout,
                fmt::format("rendezvous store {}: timed out after {} waiting for keys {}; are "
                            "the ranks that publish them running? (one may have crashed, be "
                            "stuck, or not have started)",
                            address_, framing::seconds_string(milliseconds(timeout.timeout_ms())),
                            key_list(timeout.missing_keys())));
  }
  if (response.result_case() == wire::Response::kError) {
    const auto& error = response.error();
    const auto kind = error.code() == wire::ErrorResponse::INVALID_ARGUMENT
                          ? ErrorKind::invalid_argument
                          : ErrorKind::protocol;
    throw Error(kind, fmt::format("rendezvous store {}: {} refused: {}", address_, what,
                                  error.message()));
  }
  std::lock_guard lock(mutex_);
  fail(ErrorKind::protocol,
       fmt::format("reply to {} is of the wrong kind ({}); the store server is confused or of "
                   "another version",
                   what, static_cast<int>(response.result_case())));
}

TcpStoreClient::TcpStoreClient(const std::string& host, std::uint16_t port,
                               milliseconds connect_timeout, std::string secret)
    : impl_(std::make_unique<Impl>(host, port, connect_timeout, secret)) {}

TcpStoreClient::~TcpStoreClient() = default;

void TcpStoreClient::set(const std::string& key, std::string_view value) {
  wire::Request request;
  auto* op = request.mutable_set();
  op->set_key(key);
  op->set_value(value.data(), value.size());
  const auto what = "set " + quoted(key);
  const auto response = impl_->call(request, kRequestTimeout, what);
  impl_->expect(response, wire::Response::kSet, what);
}

std::string TcpStoreClient::get(const std::string& key, milliseconds timeout) {
  timeout = clamp_wait(timeout);
  wire::Request request;
  auto* op = request.mutable_get();
  op->set_key(key);
  op->set_timeout_ms(timeout.count());
  const auto what = "get " + quoted(key);
  auto response = impl_->call(request, timeout + kWaitMargin, what);
  impl_->expect(response, wire::Response::kGet, what);
  return std::move(*response.mutable_get()->mutable_value());
}

void TcpStoreClient::wait(const std::vector<std::string>& keys, milliseconds timeout) {
  timeout = clamp_wait(timeout);
  wire::Request request;
  auto* op = request.mutable_wait();
  for (const auto& key : keys) op->add_keys(key);
  op->set_timeout_ms(timeout.count());
  const auto what = fmt::format("wait for {} key(s)", keys.size());
  const auto response = impl_->call(request, timeout + kWaitMargin, what);
  impl_->expect(response, wire::Response::kWait, what);
}

std::int64_t TcpStoreClient::add(const std::string& key, std::int64_t delta) {
  wire::Request request;
  auto* op = request.mutable_add();
  op->set_key(key);
  op->set_delta(delta);
  const auto what = "add to " + quoted(key);
  const auto response = impl_->call(request, kRequestTimeout, what);
  impl_->expect(response, wire::Response::kAdd, what);
  return response.add().value();
}

bool TcpStoreClient::remove(const std::string& key) {
  wire::Request request;
  request.mutable_remove()->set_key(key);
  const auto what = "remove " + quoted(key);
  const auto response = impl_->call(request, kRequestTimeout, what);
  impl_->expect(response, wire::Response::kRemove, what);
  return response.remove().existed();
}

bool TcpStoreClient::check(const std::vector<std::string>& keys) {
  wire::Request request;
  auto* op = request.mutable_check();
  for (const auto& key : keys) op->add_keys(key);
  const auto what = fmt::format("check {} key(s)", keys.size());
  const auto response = impl_->call(request, kRequestTimeout, what);
  impl_->expect(response, wire::Response::kCheck, what);
  return response.check().all_present();
}

std::string TcpStoreClient::local_address() const { return impl_->local_address(); }

int TcpStoreClient::connection_handle() { return impl_->connection_handle(); }

}  // namespace ringfuse::rendezvous
