// The public API's promise: ringfuse::Error is the only exception that leaves it. Anything
// else that escapes from below (std::bad_alloc, a std::system_error or std::invalid_argument
// from a helper, a Boost.Asio error) becomes an Error that says what was being done, so a
// caller needs one catch and never dies of an uncaught exception (abort, exit 134).
#pragma once

#include <exception>
#include <new>
#include <string_view>
#include <utility>

#include "core/errors.hpp"
#include "ringfuse/error.hpp"

namespace ringfuse::context {

/// Runs `body` and returns its result; translates any exception that is not a
/// ringfuse::Error into Error(ErrorKind::system) reported by `rank` (Error::kNoRank when not
/// yet known), naming `what` ("init()") and the original message.
template <class Body>
decltype(auto) only_ringfuse_errors(int rank, std::string_view what, Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw core::rank_error(ErrorKind::system, rank, "{} ran out of memory", what);
  } catch (const std::exception& e) {
    throw core::rank_error(ErrorKind::system, rank, "{} failed: {}", what, e.what());
  } catch (...) {
    throw core::rank_error(ErrorKind::system, rank, "{} failed with an unknown exception", what);
  }
}

}  // namespace ringfuse::context
