#include "health_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>

#include "ringfuse/error.hpp"

namespace ringfuse::launcher {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

HealthState::HealthState() : started_at_(Clock::now()) {}

HealthState::~HealthState() {
  progress_.clear();  // unmaps before the files go
  if (!progress_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(progress_dir_, ignored);
  }
}

std::optional<std::string> HealthState::progress_file_for(int rank) {
  std::lock_guard lock(mutex_);
  if (progress_unavailable_) return std::nullopt;
  try {
    if (progress_dir_.empty()) {
      // tmpfs where there is one (a pod's /dev/shm is memory): the records are written often.
      std::string base = "/dev/shm";
      if (!std::filesystem::is_directory(base)) {
        const char* tmp = std::getenv("TMPDIR");
        base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
      }
      std::string pattern = base + "/ringfuse-progress-XXXXXX";
      if (::mkdtemp(pattern.data()) == nullptr) {
        throw Error(ErrorKind::system, "cannot create a directory like " + pattern + ": " +
                                           std::strerror(errno));
      }
      progress_dir_ = pattern;
    }
    const std::string path = progress_dir_ + "/rank-" + std::to_string(rank);
    progress_[rank] = std::make_unique<core::ProgressReader>(path);
    return path;
  } catch (const Error& error) {
    progress_unavailable_ = true;
    std::fprintf(stderr,
                 "ringfuse-run: /metrics will show no step or all-reduce figures: %s\n",
                 error.what());
    return std::nullopt;
  }
}

void HealthState::set_starting(std::string why) {
  std::lock_guard lock(mutex_);
  starting_ = std::move(why);
}

void HealthState::expect_ranks(int local_ranks) {
  std::lock_guard lock(mutex_);
  local_ranks_ = local_ranks;
  starting_ = "starting " + std::to_string(local_ranks) + " local ranks";
}

void HealthState::rank_started() {
  std::lock_guard lock(mutex_);
  ++started_;
}

void HealthState::rank_exited(int rank, int exit_code) {
  std::lock_guard lock(mutex_);
  exit_codes_[rank] = exit_code;
  if (exit_code == 0) {
    ++exited_ok_;
  } else {
    ++failed_;
  }
}

void HealthState::set_failed(std::string reason) {
  std::lock_guard lock(mutex_);
  if (!failure_) failure_ = std::move(reason);
}

HealthState::Response HealthState::healthz() const {
  std::lock_guard lock(mutex_);
  if (failure_) return {503, "text/plain; charset=utf-8", "failed: " + *failure_ + "\n"};
  return {200, "text/plain; charset=utf-8", "ok\n"};
}

HealthState::Response HealthState::readyz() const {
  std::lock_guard lock(mutex_);
  if (local_ranks_ > 0 && started_ >= local_ranks_) {
    return {200, "text/plain; charset=utf-8", "ready\n"};
  }
  return {503, "text/plain; charset=utf-8", "starting: " + starting_ + "\n"};
}

std::string HealthState::progress_metrics() const {
  std::map<int, core::ProgressSnapshot> snapshots;
  for (const auto& [rank, reader] : progress_) {
    auto snapshot = reader->read();
    if (snapshot.attached) snapshots.emplace(rank, snapshot);
  }
  if (snapshots.empty()) return {};
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  std::string body;
  const auto family = [&](const char* name, const char* type, const char* help,
                          const auto& value_of) {
    body += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& [rank, snapshot] : snapshots) {
      body += fmt::format("{}{{rank=\"{}\"}} {}\n", name, rank, value_of(snapshot));
    }
  };
  using Snapshot = core::ProgressSnapshot;
  family("ringfuse_step", "gauge",
         "Training step each local rank reported last (Context::report_step).",
         [](const Snapshot& s) { return s.step; });
  family("ringfuse_collectives_total", "counter",
         "Collectives each local rank completed (an engine-fused all-reduce counts once).",
         [](const Snapshot& s) { return s.collectives; });
  family("ringfuse_allreduce_total", "counter", "All-reduces each local rank completed.",
         [](const Snapshot& s) { return s.allreduces; });
  family("ringfuse_allreduce_bytes_total", "counter", "Bytes each local rank all-reduced.",
         [](const Snapshot& s) { return s.allreduce_bytes; });
  family("ringfuse_allreduce_seconds_total", "counter",
         "Seconds each local rank spent in all-reduces.", [](const Snapshot& s) {
           return fmt::format("{:.6f}", static_cast<double>(s.allreduce_nanoseconds) * 1e-9);
         });
  family("ringfuse_allreduce_busbw_bytes_per_second", "gauge",
         "Mean all-reduce bus bandwidth so far: bytes x 2(n-1)/n per second, as nccl-tests "
         "counts it.",
         [](const Snapshot& s) { return fmt::format("{:.0f}", s.allreduce_busbw()); });
  family("ringfuse_progress_age_seconds", "gauge",
         "Seconds since each local rank last completed a collective or reported a step.",
         [&](const Snapshot& s) {
           const auto age = std::max<std::int64_t>(
               0, now_ms - static_cast<std::int64_t>(s.updated_unix_ms));
           return fmt::format("{:.3f}", static_cast<double>(age) * 1e-3);
         });
  return body;
}

HealthState::Response HealthState::metrics() const {
  std::lock_guard lock(mutex_);
  const int running = std::max(0, started_ - exited_ok_ - failed_);
  char uptime[64];
  std::snprintf(uptime, sizeof(uptime), "%.3f",
                std::chrono::duration<double>(Clock::now() - started_at_).count());
  std::string body =
      "# HELP ringfuse_ranks Local ranks of this launcher by state (exited: exit code 0; "
      "failed: non-zero or a signal).\n"
      "# TYPE ringfuse_ranks gauge\n"
      "ringfuse_ranks{state=\"running\"} " + std::to_string(running) + "\n"
      "ringfuse_ranks{state=\"exited\"} " + std::to_string(exited_ok_) + "\n"
      "ringfuse_ranks{state=\"failed\"} " + std::to_string(failed_) + "\n"
      "# HELP ringfuse_local_ranks Ranks this launcher starts (0 until start-up is done).\n"
      "# TYPE ringfuse_local_ranks gauge\n"
      "ringfuse_local_ranks " + std::to_string(local_ranks_) + "\n"
      "# HELP ringfuse_launcher_uptime_seconds Seconds since ringfuse-run started.\n"
      "# TYPE ringfuse_launcher_uptime_seconds gauge\n"
      "ringfuse_launcher_uptime_seconds " + uptime + "\n";
  body += progress_metrics();
  if (!exit_codes_.empty()) {
    body +=
        "# HELP ringfuse_rank_exit_code Exit code of each exited rank (128+signal when a "
        "signal ended it).\n"
        "# TYPE ringfuse_rank_exit_code gauge\n";
    for (const auto& [rank, code] : exit_codes_) {
      body += "ringfuse_rank_exit_code{rank=\"" + std::to_string(rank) + "\"} " +
              std::to_string(code) + "\n";
    }
  }
  return {200, "text/plain; version=0.0.4; charset=utf-8", std::move(body)};
}

HealthState::Response HealthState::respond(const std::string& target) const {
  const std::string path = target.substr(0, target.find('?'));
  if (path == "/healthz") return healthz();
  if (path == "/readyz") return readyz();
  if (path == "/metrics") return metrics();
  return {404, "text/plain; charset=utf-8", "not found; try /healthz, /readyz or /metrics\n"};
}

namespace {

// One connection: reads one request (5 s at most), answers it and closes.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HealthState& state)
      : stream_(std::move(socket)), state_(state) {
    parser_.header_limit(8 * 1024);
    parser_.body_limit(4 * 1024);
  }

  void start() {
    stream_.expires_after(std::chrono::seconds(5));
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) {
                       self->on_read(ec);
                     });
  }

 private:
  void on_read(beast::error_code ec) {
    if (ec) {
      // A malformed request gets a 400; a closed or timed-out connection is just closed.
      if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message) {
        answer({400, "text/plain; charset=utf-8", "bad request: " + ec.message() + "\n"}, 11,
               false);
      } else {
        close();
      }
      return;
    }
    const auto& request = parser_.get();
    HealthState::Response response;
    if (request.method() != http::verb::get && request.method() != http::verb::head) {
      response = {405, "text/plain; charset=utf-8", "only GET and HEAD\n"};
    } else {
      response = state_.respond(std::string(request.target()));
    }
    answer(std::move(response), request.version(), request.method() == http::verb::head);
  }

  void answer(HealthState::Response response, unsigned version, bool head) {
    response_.version(version);
    response_.result(static_cast<unsigned>(response.status));
    response_.set(http::field::server, "ringfuse-run");
    response_.set(http::field::content_type, response.content_type);
    response_.set(http::field::cache_control, "no-store");
    response_.keep_alive(false);
    response_.body() = std::move(response.body);
    response_.prepare_payload();
    if (response.status == 405) response_.set(http::field::allow, "GET, HEAD");
    if (head) response_.body().clear();  // Content-Length stays that of the GET
    stream_.expires_after(std::chrono::seconds(5));
    http::async_write(stream_, response_,
                      [self = shared_from_this()](beast::error_code, std::size_t) {
                        self->close();
                      });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::request_parser<http::string_body> parser_;
  http::response<http::string_body> response_;
  const HealthState& state_;
};

}  // namespace

struct HealthServer::Impl {
  Impl(const HealthState& state, std::uint16_t port) : state(state), acceptor(io) {
    const tcp::endpoint endpoint(asio::ip::address_v4::any(), port);
    beast::error_code ec;
    acceptor.open(endpoint.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      throw Error(ErrorKind::system, "cannot serve --health-port " + std::to_string(port) +
                                         " on 0.0.0.0: " + ec.message());
    }
    bound_port = acceptor.local_endpoint().port();
    accept();
    thread = std::thread([this] {
      // A handler's exception must not end the launcher; keep serving.
      while (true) {
        try {
          io.run();
          return;
        } catch (...) {
        }
      }
    });
  }

  ~Impl() {
    asio::post(io, [this] {
      beast::error_code ignored;
      acceptor.close(ignored);
    });
    io.stop();
    thread.join();
  }

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) std::make_shared<Session>(std::move(socket), state)->start();
      accept();
    });
  }

  const HealthState& state;
  asio::io_context io{1};
  tcp::acceptor acceptor;
  std::uint16_t bound_port = 0;
  std::thread thread;
};

HealthServer::HealthServer(const HealthState& state, std::uint16_t port)
    : impl_(std::make_unique<Impl>(state, port)) {}

HealthServer::~HealthServer() = default;

std::uint16_t HealthServer::port() const { return impl_->bound_port; }

}  // namespace ringfuse::launcher
