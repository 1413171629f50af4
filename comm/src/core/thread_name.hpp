// Names for Ringfuse's own threads, so that top -H, perf, gdb and py-spy tell them from the
// training's threads (all "python3" otherwise).
#pragma once

namespace ringfuse::core {

/// Names the calling thread. Linux keeps 15 characters; a longer name is cut. Best effort: a
/// thread that cannot be named runs on unnamed.
void name_this_thread(const char* name);

}  // namespace ringfuse::core
