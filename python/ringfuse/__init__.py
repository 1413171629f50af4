"""Ringfuse from Python.

``ringfuse._core`` is the C++ extension (this rank's Context and the asynchronous engine over
torch tensors); ``ringfuse.torch`` is Horovod's PyTorch API on top of it::

    import ringfuse.torch as hvd
"""

__version__ = "0.1.0"
