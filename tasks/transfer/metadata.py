"""Where the metadata that callbacks set on a file is kept: extended attributes.

A callback changes `info.metadata` (the seed's `metadata['key']`); storeflow stores each
key as the user extended attribute `user.storeflow.<key>` on the delivered file, so the
metadata travels with the file (`getfattr -d -m user.storeflow FILE` shows it), survives
renames and is readable by the next transfer's callbacks.  Attributes are set on the
temporary file before it is renamed into place, so a file never appears under its final
name without its metadata.

Only local files have extended attributes here (the SMB and NFS clients carry none); for
every destination the metadata is also recorded with the execution in the resource
database (`transfer_executions.file_metadata`), which is the record for remote files.
"""

import errno
import os
from collections.abc import Sequence

from storeflow.tasks.transfer import native

PREFIX = "user.storeflow."


class MetadataNotStored(OSError):
    """The filesystem refused an attribute (no xattr support, value too large...)."""


def read(path: str) -> dict[str, str]:
    """The storeflow metadata already on a local file (empty where xattrs are unsupported)."""
    try:
        names = os.listxattr(path)
    except OSError:
        return {}
    found: dict[str, str] = {}
    for name in names:
        if name.startswith(PREFIX):
            try:
                found[name.removeprefix(PREFIX)] = os.getxattr(path, name).decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return found


class ManyRead:
    """:func:`read_many` of a chunk of local files: which of them carry storeflow
    metadata is asked of the native loop (one system call a file, without the GIL), with
    ``ahead`` on a thread of its own while the caller works on something else;
    :meth:`result` waits for it and reads those that do."""

    __slots__ = ("paths", "probe")

    def __init__(self, paths: Sequence[str], ahead: bool = True) -> None:
        self.paths = paths
        self.probe = native.tagged_job(paths, PREFIX.encode(), ahead)

    def result(self) -> list[dict[str, str]]:
        paths = self.paths
        if self.probe is None:  # no native loop: read here, file by file
            return [read(p) for p in paths]
        found = self.probe.result()
        if 1 not in found:
            return [{} for _ in paths]
        return [read(p) if hit > 0 else {} for p, hit in zip(paths, found, strict=True)]

    def wait(self) -> None:
        """Let the probe end (its answer unread)."""
        if self.probe is not None:
            self.probe.wait()


def read_many(paths: Sequence[str]) -> list[dict[str, str]]:
    """:func:`read` for many local files, in order.  Which of them carry storeflow
    metadata is asked of the native loop for all at once (one system call each, the
    GIL released for the whole list); only those are read here."""
    return ManyRead(paths, ahead=False).result()


def write(path: str, metadata: dict[str, str], removed: list[str] | None = None) -> None:
    """Set every key of `metadata` on `path`, and remove `removed` keys."""
    for key, value in metadata.items():
        if not key or "\0" in key:
            raise MetadataNotStored(errno.EINVAL, f"metadata key {key!r} is not storable")
        try:
            os.setxattr(path, PREFIX + key, value.encode("utf-8"))
        except OSError as exc:
            raise MetadataNotStored(
                exc.errno, f"cannot store metadata {key!r} on {path}: {exc.strerror}"
            ) from exc
    for key in removed or []:
        try:
            os.removexattr(path, PREFIX + key)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
                raise MetadataNotStored(
                    exc.errno, f"cannot remove metadata {key!r} from {path}: {exc.strerror}"
                ) from exc
