// The one entry point the context layer uses to start an engine.
#pragma once

#include <memory>

#include "engine/engine_impl.hpp"

namespace ringfuse::engine {

inline std::unique_ptr<Engine> make_engine(EngineResources resources) {
  return std::make_unique<EngineImpl>(std::move(resources));
}

}  // namespace ringfuse::engine
