// Shared-memory names must not outlive a rank killed during set-up. Between creating its
// segment and the moment every peer has mapped it (when the name is unlinked), a rank waits in
// the store; a launcher that stops the job then sends SIGTERM, whose default action would end
// the process without running any destructor. While a guard below is alive, such a signal
// first unlinks the guarded names, then kills the process as the default action would have.
// Outside set-up the process's signal dispositions are untouched.
//
// Signal dispositions belong to the process, so this is the one process-wide registry in
// Ringfuse: a fixed table of names, touched from the handler with async-signal-safe calls only.
#pragma once

#include <string>

namespace ringfuse::transport::shm {

class UnlinkOnSignal {
 public:
  UnlinkOnSignal() = default;
  /// Guards the POSIX shm name `name` ("/ringfuse-..."). While any name is guarded, the
  /// handler is installed for those of SIGTERM, SIGINT and SIGHUP whose action was the
  /// default (a program that handles a signal itself keeps it: it does not die by it, so the
  /// set-up's own error path unlinks); the last guard to go restores the default. When the
  /// table is full the name is not guarded.
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
