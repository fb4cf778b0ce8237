"""What can go wrong in a transfer, as exceptions that say what and where."""

from __future__ import annotations

from storeflow.models.errors import StoreflowError


class TransferError(StoreflowError):
    """Base class of every transfer failure."""


class ProtocolError(TransferError):
    """An I/O operation failed on a source or destination."""

    def __init__(self, protocol: str, operation: str, path: str, reason: str) -> None:
        self.protocol = protocol
        self.operation = operation
        self.path = path
        self.reason = reason
        super().__init__(f"{protocol}: {operation} {path!r} failed: {reason}")


class UnknownProtocol(TransferError):
    """No handler is registered under the protocol name."""


class UnsupportedOperation(TransferError):
    """The handler cannot do this (e.g. OTF pull mode, or chmod over SMB)."""


class NoFilesFound(TransferError):
    """No file matched and the source has ``error: true`` (the OTF default)."""


class ConditionNotMet(TransferError):
    """The ``count`` conditional refused the set of matching files."""


class FileWatchTimeout(TransferError):
    """The ``fileWatch`` timed out before a stable matching file appeared."""


class UnsafeName(TransferError):
    """A rename would produce a name that leaves its directory or is not a file name."""


class NameCollision(TransferError):
    """Two files would end up under the same name in one directory."""


class DestinationMissing(TransferError):
    """A destination directory does not exist and may not be created."""


class PostCopyRefused(TransferError):
    """The ``postCopyAction`` cannot be carried out; checked before anything is copied."""
