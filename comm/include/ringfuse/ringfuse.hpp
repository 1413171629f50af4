// Umbrella header: everything a training program needs.
#pragma once

#include "ringfuse/context.hpp"
#include "ringfuse/engine.hpp"
#include "ringfuse/error.hpp"
#include "ringfuse/types.hpp"
