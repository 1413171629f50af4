// ringfuse-run --health-port: a tiny HTTP/1.1 endpoint for Kubernetes probes and Prometheus.
// GET /healthz (liveness), /readyz (readiness), /metrics (Prometheus text format 0.0.4). It is
// served by its own thread (Boost.Beast), so it answers while the ranks run long collectives.
// Besides the state of its local ranks, /metrics shows their progress (step, all-reduce
// bytes and bus bandwidth), read from the record each rank's library keeps in a shared file
// (core/progress_record.hpp) that the launcher creates and names in RINGFUSE_PROGRESS_FILE.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/progress_record.hpp"

namespace ringfuse::launcher {

/// What the supervisor (and Kubernetes start-up) tells the health endpoint. Thread-safe.
class HealthState {
 public:
  HealthState();
  ~HealthState();
  HealthState(const HealthState&) = delete;
  HealthState& operator=(const HealthState&) = delete;

  /// Creates local rank `rank`'s progress record and returns the path to pass it in
  /// RINGFUSE_PROGRESS_FILE; nullopt (reported once) if no record can be created, in which
  /// case /metrics shows only the rank's state.
  std::optional<std::string> progress_file_for(int rank);

  /// Not ready yet, and why ("starting: <why>" on /readyz).
  void set_starting(std::string why);
  /// `local_ranks` are about to be started.
  void expect_ranks(int local_ranks);
  /// One more local rank was started.
  void rank_started();
  /// Rank `rank` ended with `exit_code` (0 = success; 128+signal when a signal ended it).
  void rank_exited(int rank, int exit_code);
  /// The job failed (a rank failed, or the launcher is stopping it): /healthz turns 503.
  void set_failed(std::string reason);

  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  Response healthz() const;
  Response readyz() const;
  Response metrics() const;
  /// The response for `target` (a GET's path, query ignored): 404 for unknown paths.
  Response respond(const std::string& target) const;

 private:
  /// The progress families of /metrics, one line per local rank that attached its record.
  /// Called with mutex_ held.
  std::string progress_metrics() const;

  mutable std::mutex mutex_;
  std::chrono::steady_clock::time_point started_at_;
  std::string starting_ = "launcher starting";
  int local_ranks_ = 0;
  int started_ = 0;
  int exited_ok_ = 0;
  int failed_ = 0;
  std::map<int, int> exit_codes_;
  std::optional<std::string> failure_;
  std::string progress_dir_;  // created on first use, removed with its files on destruction
  bool progress_unavailable_ = false;
  std::map<int, std::unique_ptr<core::ProgressReader>> progress_;
};

/// Serves `state` on 0.0.0.0:`port` (0: an ephemeral port, see port()) until destroyed; the
/// destructor stops the thread and joins it. Throws ringfuse::Error if the port cannot be bound.
class HealthServer {
 public:
  HealthServer(const HealthState& state, std::uint16_t port);
  ~HealthServer();
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  std::uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ringfuse::launcher
