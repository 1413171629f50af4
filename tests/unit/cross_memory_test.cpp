// transport/cross_memory.hpp: copies to and from another process through the kernel, with
// the errno that stopped them (which the shared-memory transport turns into a peer's error).
#include "transport/cross_memory.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <numeric>
#include <vector>

#include <gtest/gtest.h>

namespace ringfuse::transport {
namespace {

std::uintptr_t address_of(const void* data) { return reinterpret_cast<std::uintptr_t>(data); }

/// Kills and reaps the child when the test ends early (a failed ASSERT), so no child waits on.
struct ReapChild {
  pid_t pid;
  ~ReapChild() {
    if (pid <= 0) return;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
};

// A child process forked from this one has the same addresses: it writes a pattern into its
// copy of `shared`, reports over a pipe, and waits to be killed.
TEST(CrossMemory, ReadsAndWritesAnotherProcess) {
  std::vector<std::uint32_t> theirs(300000);  // several pages, not page-aligned
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::iota(theirs.begin(), theirs.end(), 7u);
    const char byte = 1;
    (void)!::write(ready[1], &byte, 1);
    ::pause();
    ::_exit(0);
  }
  ReapChild reap{child};
  // Only the child holds the write end now: should it die first, the read ends at EOF.
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);

  std::vector<std::uint32_t> got(theirs.size());
  ASSERT_EQ(cross_memory::read(child, address_of(theirs.data()), got.data(),
                               got.size() * sizeof(std::uint32_t)),
            0);
  std::vector<std::uint32_t> expected(theirs.size());
  std::iota(expected.begin(), expected.end(), 7u);
  EXPECT_EQ(got, expected);

  const std::array<std::uint32_t, 3> patch{1, 2, 3};
  ASSERT_EQ(cross_memory::write(child, address_of(theirs.data() + 1000), patch.data(),
                                sizeof(patch)),
            0);
  std::array<std::uint32_t, 5> around{};
  ASSERT_EQ(cross_memory::read(child, address_of(theirs.data() + 999), around.data(),
                               sizeof(around)),
            0);
  EXPECT_EQ(around, (std::array<std::uint32_t, 5>{1006, 1, 2, 3, 1010}));

  // An address the child has not mapped, then a child that is gone.
  std::uint32_t word = 0;
  EXPECT_EQ(cross_memory::read(child, 8, &word, sizeof(word)), EFAULT);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  reap.pid = 0;
  EXPECT_EQ(cross_memory::read(child, address_of(theirs.data()), &word, sizeof(word)), ESRCH);
  ::close(ready[0]);
}

}  // namespace
}  // namespace ringfuse::transport
