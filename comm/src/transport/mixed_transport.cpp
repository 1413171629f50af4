#include "transport/mixed_transport.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "core/errors.hpp"
#include "core/thread_name.hpp"

namespace ringfuse::transport {

MixedTransport::Sender::Sender()
    : thread_([this] {
        core::name_this_thread("rf-host-send");
        loop();
      }) {}

MixedTransport::Sender::~Sender() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void MixedTransport::Sender::start(const void* data, std::size_t bytes,
                                   std::function<void(const void*, std::size_t)> send) {
  {
    std::lock_guard lock(mutex_);
    // No send is under way (the caller checked busy()), so nothing reads the copy now.
    copy_.resize(bytes);
    if (bytes > 0) std::memcpy(copy_.data(), data, bytes);
    job_ = [this, bytes, send = std::move(send)] { send(copy_.data(), bytes); };
    busy_ = true;
    error_ = nullptr;
  }
  changed_.notify_all();
}

std::optional<std::exception_ptr> MixedTransport::Sender::finish(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_until(lock, deadline, [&] { return !busy_; })) return std::nullopt;
  return error_;
}

bool MixedTransport::Sender::busy() {
  std::lock_guard lock(mutex_);
  return busy_;
}

void MixedTransport::Sender::loop() {
  std::unique_lock lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stop_ || job_; });
    if (!job_) return;  // stopping, with nothing left to send
    auto job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    error_ = error;
    busy_ = false;
    changed_.notify_all();
  }
}

MeshOptions MixedTransport::group_mesh(const MeshOptions& mesh, const std::vector<int>& group) {
  MeshOptions options = mesh;
  options.key_prefix = fmt::format("{}shm-group{}/", mesh.key_prefix, group.front());
  if (options.report_prefix.empty()) options.report_prefix = mesh.key_prefix;
  std::vector<int> global;
  std::vector<std::string> places;  // a hierarchy's host group knows where each rank runs
  for (const int position : group) {
    global.push_back(mesh.global_ranks(position));
    places.push_back(mesh.global_ranks.place(position));
  }
  options.global_ranks = GlobalRanks(std::move(global), std::move(places));
  return options;
}

MixedTransport::MixedTransport(int rank, int size, rendezvous::Store& store,
                               const MeshOptions& mesh, std::vector<int> group,
                               std::size_t ring_bytes)
    : rank_(rank),
      size_(size),
      global_ranks_(mesh.global_ranks),
      op_timeout_(mesh.op_timeout),
      group_(std::move(group)) {
  MeshOptions shared = mesh;
  // One abort state for both, so neither records an orderly close after the other failed.
  if (!shared.abort_state) shared.abort_state = std::make_shared<AbortState>();
  ShmOptions shm{group_mesh(shared, group_)};
  shm.ring_bytes = ring_bytes;
  const auto own = std::find(group_.begin(), group_.end(), rank_);
  shm_ = std::make_unique<ShmTransport>(static_cast<int>(own - group_.begin()),
                                        static_cast<int>(group_.size()), store, std::move(shm));
  tcp_ = std::make_unique<TcpMesh>(rank_, size_, store, shared);
}

MixedTransport::~MixedTransport() = default;

bool MixedTransport::shares_memory_with(int peer) const {
  return peer != kNoPeer && std::binary_search(group_.begin(), group_.end(), peer);
}

Transport& MixedTransport::via(int peer) {
  if (shares_memory_with(peer)) return *shm_;
  return *tcp_;
}

int MixedTransport::position_in(const Transport& transport, int peer) const {
  if (peer == kNoPeer || &transport != shm_.get()) return peer;
  return static_cast<int>(std::lower_bound(group_.begin(), group_.end(), peer) - group_.begin());
}

Transport* MixedTransport::one_transport_for(int send_peer, bool sends, int recv_peer,
                                             bool receives) {
  if (sends && receives && shares_memory_with(send_peer) != shares_memory_with(recv_peer)) {
    return nullptr;
  }
  return &via(sends ? send_peer : recv_peer);
}

int MixedTransport::side_on(const Transport& transport, int peer, bool has_bytes) const {
  return has_bytes ? position_in(transport, peer) : kNoPeer;
}

void MixedTransport::refuse_while_sending() {
  if (failed_ && sender_.busy()) std::rethrow_exception(failed_);
}

void MixedTransport::split(int send_peer, const void* send_buf, std::size_t send_bytes,
                           const std::function<void()>& receive) {
  Transport& sending = via(send_peer);
  const int to = position_in(sending, send_peer);
  sender_.start(send_buf, send_bytes, [&sending, to](const void* data, std::size_t bytes) {
    sending.send(to, data, bytes);
  });
  try {
    receive();
  } catch (...) {
    // The send reads its own copy: the receive's failure is reported now, not after the
    // send to another peer (which may have stopped reading) has run into its own timeout.
    failed_ = std::current_exception();
    throw;
  }
  const auto sent = sender_.finish(Clock::now() + op_timeout_);
  if (!sent) {
    const int peer = global_ranks_(send_peer);
    failed_ = std::make_exception_ptr(core::error_at(
        ErrorKind::timeout, global_ranks_(rank_), peer,
        "{}: the send to {} over {} has not finished {} s after this step's receive did "
        "(RINGFUSE_TIMEOUT_S): rank {} takes the bytes too slowly or has stopped reading "
        "(stalled, stopped, or not calling the same collective?)",
        operation_, global_ranks_.name(send_peer),
        &sending == shm_.get() ? "shared memory" : "tcp", op_timeout_.count() / 1000, peer));
    std::rethrow_exception(failed_);
  }
  if (*sent) std::rethrow_exception(*sent);
}

void MixedTransport::send_recv(int send_peer, const void* send_buf, std::size_t send_bytes,
                               int recv_peer, void* recv_buf, std::size_t recv_bytes,
                               const RecvProgress& progress) {
  refuse_while_sending();
  const bool sends = send_peer != kNoPeer && send_bytes > 0;
  const bool receives = recv_peer != kNoPeer && recv_bytes > 0;
  if (Transport* transport = one_transport_for(send_peer, sends, recv_peer, receives)) {
    transport->send_recv(side_on(*transport, send_peer, sends), send_buf, sends ? send_bytes : 0,
                         side_on(*transport, recv_peer, receives), recv_buf,
                         receives ? recv_bytes : 0, progress);
    return;
  }
  split(send_peer, send_buf, send_bytes, [&] {
    Transport& receiving = via(recv_peer);
    receiving.recv(position_in(receiving, recv_peer), recv_buf, recv_bytes, progress);
  });
}

void MixedTransport::send_recv_reduce(int send_peer, const void* send_buf, std::size_t send_bytes,
                                      int recv_peer, void* dst, std::size_t recv_count,
                                      DataType type, ReduceOp op, const Staging& staging) {
  refuse_while_sending();
  const bool sends = send_peer != kNoPeer && send_bytes > 0;
  const bool receives = recv_peer != kNoPeer && recv_count > 0;
  if (Transport* transport = one_transport_for(send_peer, sends, recv_peer, receives)) {
    transport->send_recv_reduce(side_on(*transport, send_peer, sends), send_buf,
                                sends ? send_bytes : 0, side_on(*transport, recv_peer, receives),
                                dst, receives ? recv_count : 0, type, op, staging);
    return;
  }
  split(send_peer, send_buf, send_bytes, [&] {
    Transport& receiving = via(recv_peer);
    receiving.send_recv_reduce(kNoPeer, nullptr, 0, position_in(receiving, recv_peer), dst,
                               recv_count, type, op, staging);
  });
}

void MixedTransport::reduce_and_return(int peer, std::byte* give, std::size_t give_count,
                                       std::byte* keep, std::size_t keep_count, DataType type,
                                       ReduceOp op, const Staging& staging,
                                       const Finish& finish) {
  refuse_while_sending();
  Transport& transport = via(peer);
  transport.reduce_and_return(position_in(transport, peer), give, give_count, keep, keep_count,
                              type, op, staging, finish);
}

bool MixedTransport::wait_readable(int peer, std::chrono::microseconds timeout) {
  refuse_while_sending();
  Transport& transport = via(peer);
  return transport.wait_readable(position_in(transport, peer), timeout);
}

void MixedTransport::set_operation(std::string label) {
  operation_ = label;
  if (failed_ && sender_.busy()) return;  // the helper thread is still in one of them
  shm_->set_operation(label);
  tcp_->set_operation(std::move(label));
}

}  // namespace ringfuse::transport
