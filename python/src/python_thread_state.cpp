#include "python_thread_state.hpp"

#include <Python.h>

namespace ringfuse::python {

void KeptThreadState::keep() {
  if (kept_ || !Py_IsInitialized() || _Py_IsFinalizing()) return;
  gil_state_ = static_cast<int>(::PyGILState_Ensure());
  // The GIL goes; the state stays this thread's (PyGILState_GetThisThreadState(), which
  // pybind11 looks for before it makes one).
  ::PyEval_SaveThread();
  kept_ = true;
}

KeptThreadState::~KeptThreadState() {
  if (!kept_ || !Py_IsInitialized() || _Py_IsFinalizing()) return;
  ::PyEval_RestoreThread(::PyGILState_GetThisThreadState());
  ::PyGILState_Release(static_cast<PyGILState_STATE>(gil_state_));
}

}  // namespace ringfuse::python
