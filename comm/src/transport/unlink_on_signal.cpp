#include "transport/unlink_on_signal.hpp"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <mutex>

#include <spdlog/spdlog.h>

namespace ringfuse::transport::shm {
namespace {

// Enough for several worlds and channels setting up at once (each guards one ring segment
// and at most one window per rank).
constexpr std::size_t kSlots = 64;
constexpr std::size_t kPathBytes = 256;
constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP};

enum SlotState : int { kFree = 0, kFilling = 1, kArmed = 2 };

struct Slot {
  std::atomic<int> state{kFree};
  char path[kPathBytes] = {};  // "/dev/shm/ringfuse-...", ready for unlink(2)
};

std::array<Slot, kSlots> slots;
// Guards the handlers' installation and the count of armed slots; never taken in a handler.
std::mutex registry;
int armed_count = 0;
bool installed_for[std::size(kSignals)] = {};

void unlink_armed_and_die(int signal) {
  const int saved_errno = errno;
  for (auto& slot : slots) {
    // unlink(2) is async-signal-safe; shm_unlink is not promised to be. glibc's shm names
    // live in /dev/shm.
    if (slot.state.load(std::memory_order_acquire) == kArmed) ::unlink(slot.path);
  }
  // Die as the default action would have, so the launcher sees the signal as the cause.
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  ::sigemptyset(&action.sa_mask);
  ::sigaction(signal, &action, nullptr);
  errno = saved_errno;
  ::raise(signal);  // blocked while this handler runs: delivered as it returns
}

void install_handlers() {
  for (std::size_t i = 0; i < std::size(kSignals); ++i) {
    struct sigaction current {};
    if (::sigaction(kSignals[i], nullptr, &current) != 0 || current.sa_handler != SIG_DFL ||
        (current.sa_flags & SA_SIGINFO) != 0) {
      continue;  // the program handles or ignores it: leave that alone
    }
    struct sigaction action {};
    action.sa_handler = unlink_armed_and_die;
    ::sigemptyset(&action.sa_mask);
    for (const int other : kSignals) ::sigaddset(&action.sa_mask, other);
    installed_for[i] = ::sigaction(kSignals[i], &action, nullptr) == 0;
  }
}

// Once no name is in set-up, the process's dispositions are as the program left them.
void restore_handlers() {
  for (std::size_t i = 0; i < std::size(kSignals); ++i) {
    if (!installed_for[i]) continue;
    installed_for[i] = false;
    struct sigaction current {};
    if (::sigaction(kSignals[i], nullptr, &current) != 0 ||
        (current.sa_flags & SA_SIGINFO) != 0 || current.sa_handler != unlink_armed_and_die) {
      continue;  // the program installed its own since: keep it
    }
    struct sigaction action {};
    action.sa_handler = SIG_DFL;
    ::sigemptyset(&action.sa_mask);
    ::sigaction(kSignals[i], &action, nullptr);
  }
}

}  // namespace

UnlinkOnSignal::UnlinkOnSignal(const std::string& name) {
  constexpr std::string_view kDir = "/dev/shm";
  if (kDir.size() + name.size() >= kPathBytes) return;
  std::lock_guard lock(registry);
  for (std::size_t i = 0; i < slots.size(); ++i) {
    int expected = kFree;
    if (!slots[i].state.compare_exchange_strong(expected, kFilling, std::memory_order_acquire)) {
      continue;
    }
    std::memcpy(slots[i].path, kDir.data(), kDir.size());
    std::memcpy(slots[i].path + kDir.size(), name.c_str(), name.size() + 1);
    slots[i].state.store(kArmed, std::memory_order_release);
    if (armed_count++ == 0) install_handlers();
    slot_ = static_cast<int>(i);
    return;
  }
  spdlog::debug("ringfuse: more than {} shared-memory names in set-up at once; {} is not "
                "removed if a signal kills this process before its peers map it",
                kSlots, name);
}

void UnlinkOnSignal::release() {
  if (slot_ < 0) return;
  std::lock_guard lock(registry);
  slots[static_cast<std::size_t>(slot_)].state.store(kFree, std::memory_order_release);
  slot_ = -1;
  if (--armed_count == 0) restore_handlers();
}

}  // namespace ringfuse::transport::shm
