"""Ringfuse from Python.

``ringfuse._core`` is the C++ extension (this rank's Context and the asynchronous engine over
torch tensors); ``ringfuse.torch`` is Horovod's PyTorch API on top of it::

    import ringfuse.torch as hvd
"""

__version__ = "0.1.0"

import os as _os

# A Python rank trains: torch's compute threads share its cores with the all-reduce. A rank
# waiting in a large shared-memory exchange then sleeps at once instead of yielding the core
# to those threads for a time slice (README, tunables).
_os.environ.setdefault("RINGFUSE_SHM_LARGE_WAIT", "sleep")
