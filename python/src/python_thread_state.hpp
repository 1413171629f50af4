// A Python thread state kept for the life of a C++ thread that runs Python code again and
// again: a process group's worker, which settles the futures of DDP's communication hooks.
#pragma once

namespace ringfuse::python {

/// torch runs a future's Python callbacks under pybind11's gil_scoped_acquire, which gives a
/// thread that has no Python thread state a new one for each acquisition and deletes it after;
/// Python 3.11 maps and unmaps a fresh frame stack for each (in a DDP run of
/// perf/ddp_vs_gloo.py, 4.6 % of the worker's CPU samples were mmap() under the hook's
/// callbacks). With this thread's state kept, each acquisition only takes the GIL.
///
/// Only for threads Python did not start. The state is made by the first keep() (which waits
/// for the GIL once) and deleted when the thread ends, unless the interpreter is finalizing
/// then (it deletes every thread's state itself).
class KeptThreadState {
 public:
  KeptThreadState() = default;
  ~KeptThreadState();
  KeptThreadState(const KeptThreadState&) = delete;
  KeptThreadState& operator=(const KeptThreadState&) = delete;

  /// Makes the calling thread's state, unless made already or the interpreter is finalizing
  /// (taking the GIL then would end the thread). Returns with the GIL released.
  void keep();

 private:
  int gil_state_ = 0;  // PyGILState_STATE of the first keep()
  bool kept_ = false;
};

}  // namespace ringfuse::python
