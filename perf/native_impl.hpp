// Ours: the library's collectives through the public Context API only.
#pragma once

#include <memory>

#include "implementation.hpp"
#include "ringfuse/context.hpp"

namespace ringfuse::perf {

std::unique_ptr<Implementation> make_native(Context& context, Algorithm algo);

}  // namespace ringfuse::perf
