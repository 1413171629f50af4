// An allocator that keeps freed single objects on a per-thread list and hands them out again,
// for the engine's Work states: a training loop enqueues hundreds of tensors a step, each with
// a Work whose state (control block and WorkState, one block of ≈ 250 bytes) is freed when the
// caller drops the handle. glibc's per-thread cache holds 7 blocks of a size, so the rest went
// through the arena (≈ 200 instructions to allocate and ≈ 250 to free per tensor, measured with
// callgrind in perf/RESULTS.md, issue 18); a list of our own makes both a few loads and stores.
//
// A block goes to the list of the thread that frees it (any thread may free what another
// allocated: every block comes from ::operator new). Each thread keeps at most kMaxBlocks;
// the rest, and everything freed after the thread began to exit, goes to ::operator delete.
// A thread's list is emptied when the thread exits.
#pragma once

#include <cstddef>
#include <new>

namespace ringfuse::engine {

namespace detail {

template <std::size_t BlockSize>
class BlockList {
 public:
  static void* take() noexcept {
    List& list = list_;
    Node* node = list.head;
    if (node == nullptr) return nullptr;
    list.head = node->next;
    --list.count;
    return node;
  }

  /// False when the block is not kept (the list is full or the thread is exiting).
  static bool give(void* block) noexcept {
    List& list = list_;
    if (list.closed || list.count >= kMaxBlocks) return false;
    if (!list.drain_registered) {
      // Touching the thread_local with a destructor registers that destructor for this thread.
      static_cast<void>(&drain_);
      list.drain_registered = true;
    }
    list.head = ::new (block) Node{list.head};
    ++list.count;
    return true;
  }

  static std::size_t kept() noexcept { return list_.count; }

  static constexpr std::size_t kMaxBlocks = 4096;

 private:
  struct Node {
    Node* next;
  };
  // Trivially destructible, so it stays usable while other thread_locals are destroyed.
  struct List {
    Node* head = nullptr;
    std::size_t count = 0;
    bool closed = false;
    bool drain_registered = false;
  };
  struct Drain {
    ~Drain() {
      List& list = list_;
      list.closed = true;
      while (list.head != nullptr) {
        Node* node = list.head;
        list.head = node->next;
        ::operator delete(node);
      }
      list.count = 0;
    }
  };

  static constinit thread_local List list_;
  static thread_local Drain drain_;
};

template <std::size_t BlockSize>
constinit thread_local typename BlockList<BlockSize>::List BlockList<BlockSize>::list_{};
template <std::size_t BlockSize>
thread_local typename BlockList<BlockSize>::Drain BlockList<BlockSize>::drain_{};

}  // namespace detail

template <class T>
class RecyclingAllocator {
 public:
  using value_type = T;
  // Blocks come from the plain ::operator new, which aligns to this.
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  // A kept block holds the list's link.
  static_assert(sizeof(T) >= sizeof(void*));

  RecyclingAllocator() = default;
  template <class U>
  RecyclingAllocator(const RecyclingAllocator<U>&) noexcept {}  // NOLINT: rebinding converts

  T* allocate(std::size_t n) {
    if (n == 1) {
      if (void* block = Blocks::take()) return static_cast<T*>(block);
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* block, std::size_t n) noexcept {
    if (n == 1 && Blocks::give(block)) return;
    ::operator delete(block);
  }

  /// How many blocks this thread keeps for the next allocations (for tests).
  static std::size_t kept() noexcept { return Blocks::kept(); }

  template <class U>
  bool operator==(const RecyclingAllocator<U>&) const noexcept {
    return true;
  }

 private:
  using Blocks = detail::BlockList<sizeof(T)>;
};

}  // namespace ringfuse::engine
