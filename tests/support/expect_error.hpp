// For tests that expect a ringfuse::Error: run the code, check the kind, keep the message so
// the test can check what it names.
#pragma once

#include <string>

#include <gtest/gtest.h>

#include "ringfuse/error.hpp"

namespace ringfuse::test_support {

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Runs `body` expecting an Error of `kind`; returns its message for further checks (empty,
/// with a test failure, when `body` throws nothing).
template <typename Body>
std::string expect_error(ErrorKind kind, Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected an Error of kind " << to_string(kind);
  return {};
}

}  // namespace ringfuse::test_support
