// Shared-memory names must not outlive a rank killed during set-up. Between creating its
// segment and the moment every peer has mapped it (when the name is unlinked), a rank waits in
// the store; a launcher that stops the job then sends SIGTERM, whose default action would end
// the process without running any destructor. While a guard below is alive, such a signal
// first unlinks the guarded names, then kills the process as the default action would have.
//
// Signal dispositions belong to the process, so this is the one process-wide registry in
// Ringfuse: a fixed table of names, touched from the handler with async-signal-safe calls only.
#pragma once

#include <string>

namespace ringfuse::transport::shm {

class UnlinkOnSignal {
 public:
  UnlinkOnSignal() = default;
  /// Guards the POSIX shm name `name` ("/ringfuse-..."). The handler is installed for
  /// SIGTERM, SIGINT and SIGHUP on first use, for each signal whose action is still the
  /// default (a program that handles a signal itself keeps it: it does not die by it, so the
  /// set-up's own error path unlinks). When the table is full the name is not guarded.
  explicit UnlinkOnSignal(const std::string& name);
  ~UnlinkOnSignal() { release(); }
  UnlinkOnSignal(UnlinkOnSignal&& other) noexcept : slot_(other.slot_) { other.slot_ = -1; }
  UnlinkOnSignal& operator=(UnlinkOnSignal&& other) noexcept {
    if (this != &other) {
      release();
      slot_ = other.slot_;
      other.slot_ = -1;
    }
    return *this;
  }
  UnlinkOnSignal(const UnlinkOnSignal&) = delete;
  UnlinkOnSignal& operator=(const UnlinkOnSignal&) = delete;

  /// Whether the name is guarded (false only when the table was full).
  bool armed() const { return slot_ >= 0; }

 private:
  void release();
  int slot_ = -1;
};

}  // namespace ringfuse::transport::shm
