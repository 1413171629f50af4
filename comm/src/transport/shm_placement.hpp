// Where a rank that waits on shared memory runs, when nothing bound it to a CPU.
//
// Ranks launched without binding (ringfuse-run's default, like torchrun) that talk through
// shared memory end up on one CPU: a futex wake puts the woken rank on its waker's CPU, and
// the load balancer then leaves both there, since each ran a moment ago (cache-hot). Every
// wait of one for the other becomes a hand-over through the scheduler while the other CPU
// idles: a 4-byte all-reduce took 7.5-8 us unbound against 0.4 us bound, a fused scalar step
// 17-39 us against 10 (perf/RESULTS.md, issue 18). A waiting rank that finds its peer on its
// own CPU moves itself to another CPU it may use and keeps its affinity mask as it was: a
// nudge, not a binding.
#pragma once

#include <atomic>
#include <cstdint>

namespace ringfuse::transport::shm {

/// The CPU the calling thread runs on, plus one; 0 when unknown. Zero-filled shared memory
/// thus reads "unknown".
std::int32_t cpu_tag_of_this_thread();

/// Moves the calling thread off the CPU named by `tag` (cpu_tag_of_this_thread()) to another
/// CPU its affinity mask allows, then restores the mask unchanged. False when the mask allows
/// no other CPU (a bound rank) or the kernel refused.
bool move_this_thread_off(std::int32_t tag);

}  // namespace ringfuse::transport::shm
