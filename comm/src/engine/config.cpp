#include "engine/config.hpp"

#include "core/tunables.hpp"

namespace ringfuse::engine {

std::string describe_config(const EngineConfig& config, const core::EnvLookup& env) {
  Options options;
  options.engine = config;
  return core::describe_tunables(options, env, core::TunableScope::engine);
}

}  // namespace ringfuse::engine
