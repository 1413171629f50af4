"""Exceptions with Horovod's names, so scripts that catch them keep working."""


class HorovodInternalError(RuntimeError):
    """A collective failed inside the library (a peer was lost, shapes differed, a deadline
    passed...). The message is the library's own: it names the rank, the tensor and the peer.
    ``kind``, ``rank`` and ``peer`` repeat those as fields when the library gave them."""

    def __init__(self, message, kind=None, rank=None, peer=None):
        super().__init__(message)
        self.kind = kind
        self.rank = rank
        self.peer = peer


class HostsUpdatedInterrupt(RuntimeError):
    """Horovod's elastic-mode interrupt. Ringfuse has no elastic mode: never raised; exported so
    that scripts which name it still import."""
