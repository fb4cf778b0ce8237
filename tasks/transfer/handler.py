"""The protocol handler interface: I/O primitives below, the transfer logic on top.

A protocol subclass of :class:`TransferHandler` implements only the I/O primitives
(``scan``, ``open_read``, ``open_write``, ``rename``, ``delete``, ``make_dirs``,
``is_dir``, ``exists``, ``set_times``, optionally ``set_mode`` and ``resolve_link``) and
names its pydantic models (``protocol_model``, ``source_model``, ``destination_model``).
Registering the class in the ``storeflow.protocols`` entry point group (see
:mod:`storeflow.tasks.transfer.registry`) makes the protocol usable in definitions and by
providers.  What OTF users know (listing with ``fileRegex``, temp-name delivery, moving
into place, post-copy actions) is written here once, on top of the primitives; failures
raise a :class:`~storeflow.tasks.transfer.errors.TransferError`, never a return code.
"""

from __future__ import annotations

import abc
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

from storeflow.models.transfer import (
    DestinationSpec,
    PostCopyAction,
    ProtocolBlock,
    SourceSpec,
)
from storeflow.tasks.transfer import names
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.errors import (
    NameCollision,
    PostCopyRefused,
    ProtocolError,
    UnsupportedOperation,
)
from storeflow.tasks.transfer.streams import BytesDone, copy_stream

Spec = SourceSpec | DestinationSpec


class TransferHandler(abc.ABC):
    """A source or destination of a transfer, on one protocol."""

    #: The protocol's name: in error messages, and what its entry point is called.
    protocol: ClassVar[str]
    #: The model of this protocol's ``protocol`` object (with ``name`` narrowed to its
    #: registered names), and of a source and a destination on it.
    protocol_model: ClassVar[type[ProtocolBlock]]
    source_model: ClassVar[type[SourceSpec]]
    destination_model: ClassVar[type[DestinationSpec]]

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        #: Make each written file durable before closing it; set by the engine when the
        #: source will be deleted after delivery.  Protocols where one ``flush`` is cheaper
        #: may ignore it and do the work in ``flush`` instead.
        self.sync_writes = False

    @classmethod
    def preload(cls) -> None:
        """Import what this protocol loads lazily, for a process that forks workers (the
        warm runner).  Handlers import heavy client libraries on first use, since
        validating any definition loads every registered handler."""
        return None

    @classmethod
    def provider_protocol(cls, block: str | None, directory: str) -> dict[str, Any]:
        """The ``protocol`` object of a provider on this protocol.

        A provider keeps its credentials in a saved block, never in its spec: by default
        ``block`` is required and passed on.  A protocol without credentials overrides
        this.  Raise ValueError (its message names the field) to refuse the provider.
        """
        if not block:
            raise ValueError(f"a provider on {cls.protocol} needs 'block' (its credentials)")
        return {"name": cls.protocol, "block": block}

    # -- protocol primitives ----------------------------------------------------------

    @abc.abstractmethod
    def scan(self, directory: str) -> Iterator[Entry]:
        """Every entry of ``directory`` (not recursive, links not followed)."""

    def resolve_link(self, directory: str, link: Entry) -> Entry | None:
        """The regular file ``link`` points to, if it stays inside ``directory``.

        The default refuses every link: a protocol that can tell where a link points
        overrides this.
        """
        return None

    @abc.abstractmethod
    def open_read(self, path: str) -> BinaryIO:
        """Open a file for reading (binary, supports ``readinto``)."""

    @abc.abstractmethod
    def open_write(self, path: str) -> BinaryIO:
        """Create or truncate a file for writing."""

    @abc.abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Rename within the protocol, replacing ``target`` if it exists."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete a file."""

    @abc.abstractmethod
    def make_dirs(self, path: str) -> None:
        """Create a directory and its missing parents; no error if it exists."""

    @abc.abstractmethod
    def is_dir(self, path: str) -> bool: ...

    @abc.abstractmethod
    def exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    def set_times(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        """Set access and modification times."""

    def set_mode(self, path: str, mode: int) -> None:
        raise UnsupportedOperation(f"{self.protocol}: setting permissions is not supported")

    def flush(self) -> None:
        """Make what was written durable before a source is deleted (default: nothing)."""
        return None

    def close(self) -> None:
        """Release connections."""
        return None

    # -- shared logic -------------------------------------------------------------------

    @staticmethod
    def join(directory: str, name: str) -> str:
        return posixpath.join(directory, name)

    def receive(
        self,
        source: TransferHandler,
        entry: Entry,
        path: str,
        mode: int | None,
        on_bytes: BytesDone | None = None,
    ) -> None:
        """Write ``entry`` of ``source`` to ``path`` here, with its mtime and ``mode``.

        The default streams through this process; a protocol overrides it for a faster
        path when it can (e.g. copy_file_range between two local files).
        """
        with source.open_read(entry.path) as reader, self.open_write(path) as writer:
            # A reader that can move its data into a file descriptor in the kernel (SMB's
            # `smbclient get` pipe) does, when the writer is a local file.
            splice = getattr(reader, "splice_into", None)
            fileno = getattr(writer, "fileno", None)
            if callable(splice) and callable(fileno) and _is_regular(writer):
                splice(fileno(), on_bytes)
            else:
                copy_stream(reader, writer, on_bytes)
        self.finish_file(path, entry, mode)

    def finish_file(self, path: str, entry: Entry, mode: int | None) -> None:
        if mode is not None:
            self.set_mode(path, mode)
        self.set_times(path, entry.atime_ns or entry.mtime_ns, entry.mtime_ns)

    def list_entries(self, directory: str, pattern: str) -> list[Entry]:
        """Regular files of ``directory`` whose whole name matches ``pattern``, by name.

        Directories are skipped, a link counts only if it resolves to a regular file
        inside ``directory``, and files still in transit (temp names) are never listed.
        """
        return [e for chunk in self.list_entry_chunks(directory, pattern) for e in chunk]

    def list_entry_chunks(
        self, directory: str, pattern: str, size: int = 1024
    ) -> Iterator[list[Entry]]:
        """:meth:`list_entries` a chunk of up to ``size`` files at a time, in the same
        order.  Here the whole directory is scanned before the first chunk; a protocol
        that learns names before their attributes yields each chunk as soon as its
        files are known (see LocalTransfer), so a caller's work on one chunk (the
        FILTER callbacks) overlaps the listing of the next."""
        named = (e for e in self.scan(directory) if self.listed_name(e.name, pattern))
        found = [f for f in (self._as_file(directory, e) for e in named) if f is not None]
        found.sort(key=lambda e: e.name)
        for start in range(0, len(found), max(1, size)):
            yield found[start : start + size]

    @staticmethod
    def listed_name(name: str, pattern: str) -> bool:
        """A name :meth:`list_entries` may list: matching ``pattern``, not in transit."""
        return not names.is_temp_name(name) and names.matches(pattern, name)

    def _as_file(self, directory: str, entry: Entry) -> Entry | None:
        """``entry`` as a regular file to list (a link: its target's), else None."""
        if entry.kind is Kind.LINK:
            target = self.resolve_link(directory, entry)
            if target is None or target.kind is not Kind.FILE:
                return None
            return entry.with_target(target)
        return entry if entry.kind is Kind.FILE else None

    def write_flag(self, full_path: str) -> None:
        """Create an empty flag file atomically (temp name, then rename)."""
        directory, name = posixpath.split(full_path)
        names.check_plain_name(name, "flags.fullPath")
        self.make_dirs(directory or ".")
        temp = self.join(directory, names.temp_name(name))
        with self.open_write(temp):
            pass
        self.rename(temp, full_path)

    def _fail(self, operation: str, path: str, exc: BaseException) -> ProtocolError:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return ProtocolError(self.protocol, operation, path, reason)

    # -- post-copy actions ----------------------------------------------------------------

    def post_copy_targets(self, files: Iterable[str]) -> dict[str, str | None]:
        """Where each source file goes after the copy (None: deleted); checked up front.

        A missing ``move``/``rename`` target directory is created here, before anything
        is copied, or the transfer is refused.
        """
        action = self._post_copy_action()
        directory = self._source_directory()
        files = list(files)
        if action is None:
            return {}
        if action.action == "delete":
            return dict.fromkeys(files)
        target_dir = action.target_directory(directory)
        if not self.is_dir(target_dir):
            try:
                self.make_dirs(target_dir)
            except ProtocolError as exc:
                raise PostCopyRefused(
                    f"postCopyAction.destination {target_dir!r} is missing and cannot be "
                    f"created: {exc.reason}"
                ) from exc
        targets: dict[str, str | None] = {}
        seen: dict[str, str] = {}
        for name in files:
            new = name
            if action.action == "rename":
                assert action.pattern is not None and action.sub is not None
                new = names.renamed(name, action.pattern, action.sub, "postCopyAction.rename")
            target = self.join(target_dir, new)
            if target in seen:
                raise NameCollision(
                    f"postCopyAction: {seen[target]!r} and {name!r} would both become {target!r}"
                )
            seen[target] = name
            targets[name] = target
        return targets

    def apply_post_copy(self, targets: Mapping[str, str | None]) -> None:
        directory = self._source_directory()
        for name, target in targets.items():
            path = self.join(directory, name)
            if target is None:
                self.delete(path)
            elif target != path:
                self.rename(path, target)

    def _post_copy_action(self) -> PostCopyAction | None:
        return getattr(self.spec, "post_copy_action", None)

    def _source_directory(self) -> str:
        return self.spec.directory

    # -- delivery into place --------------------------------------------------------------

    def temp_path(self, final_name: str) -> str:
        """Where a file bound for ``final_name`` is written until it is complete."""
        return self.join(self.spec.directory, names.temp_name(final_name))

    def move_files_to_final_location(self, files: Iterable[str]) -> None:
        """Rename each delivered temp file to its final name (OTF's name for this step),
        replacing any old one.

        Safe to repeat: a file whose temp name is gone but whose final name exists was
        already moved by an earlier attempt.
        """
        directory = self.spec.directory
        for final in files:
            temp = self.temp_path(final)
            target = self.join(directory, final)
            try:
                self.rename(temp, target)
            except ProtocolError:
                if self.exists(temp) or not self.exists(target):
                    raise

    def tidy(self) -> None:
        """Close connections (OTF's name)."""
        self.close()

    def __enter__(self) -> TransferHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tidy()


def _is_regular(stream: Any) -> bool:
    """Whether ``stream`` writes to a regular file of this host (splice can fill it)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, TypeError):
        return False
