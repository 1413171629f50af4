// core::name_this_thread(): what top -H and perf show for Ringfuse's threads.
#include <pthread.h>

#include <array>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/thread_name.hpp"

namespace {

std::string name_of_this_thread() {
  std::array<char, 64> name{};
  EXPECT_EQ(::pthread_getname_np(::pthread_self(), name.data(), name.size()), 0);
  return name.data();
}

std::string named_in_a_thread(const char* name) {
  std::string seen;
  std::thread thread([&] {
    ringfuse::core::name_this_thread(name);
    seen = name_of_this_thread();
  });
  thread.join();
  return seen;
}

TEST(ThreadName, AShortNameIsKeptWhole) { EXPECT_EQ(named_in_a_thread("rf-engine"), "rf-engine"); }

TEST(ThreadName, ALongNameIsCutToLinuxsFifteenCharactersNotDropped) {
  // pthread_setname_np refuses a name past 15 characters and leaves the thread as it was.
  EXPECT_EQ(named_in_a_thread("rf-a-name-longer-than-fifteen"), "rf-a-name-longe");
}

TEST(ThreadName, OnlyTheCallingThreadIsNamed) {
  const std::string before = name_of_this_thread();
  named_in_a_thread("rf-other");
  EXPECT_EQ(name_of_this_thread(), before);
}

}  // namespace
