"""The handler interfaces, with Open Task Framework's method names and meanings.

A protocol subclass of :class:`TransferHandler` implements only the I/O primitives
(``scan``, ``open_read``, ``open_write``, ``rename``, ``delete``, ``make_dirs``,
``is_dir``, ``exists``, ``set_times``, optionally ``set_mode`` and ``resolve_link``).
Everything OTF users know (listing with ``fileRegex``, temp-name delivery, moving into
place, post-copy actions) is written here once, on top of those primitives.

OTF returns 0/1 from most methods; the OTF-named methods keep that for compatibility,
but they raise a :class:`~tasks.transfer.errors.TransferError` on failure rather than
returning 1, so no failure can be ignored by a caller that forgets to check.
"""

from __future__ import annotations

import abc
import os
import posixpath
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

from storeflow.models.transfer import AnyDestination, AnySource, PostCopyAction
from storeflow.tasks.transfer import names
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.errors import (
    NameCollision,
    PostCopyRefused,
    ProtocolError,
    UnsupportedOperation,
)
from storeflow.tasks.transfer.streams import BytesDone, copy_stream

Spec = AnySource | AnyDestination


class TransferHandler(abc.ABC):
    """A source or destination of a transfer, on one protocol."""

    #: Name used in error messages.
    protocol: ClassVar[str]

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        #: Make each written file durable before closing it; set by the engine when the
        #: source will be deleted after delivery.  Protocols where one ``flush`` is cheaper
        #: may ignore it and do the work in ``flush`` instead.
        self.sync_writes = False

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
            copy_stream(reader, writer, on_bytes)
        self.finish_file(path, entry, mode)

    def finish_file(self, path: str, entry: Entry, mode: int | None) -> None:
        if mode is not None:
            self.set_mode(path, mode)
        self.set_times(path, entry.atime_ns or entry.mtime_ns, entry.mtime_ns)

    def list_entries(self, directory: str, pattern: str) -> list[Entry]:
        """Regular files of ``directory`` whose whole name matches ``pattern``.

        Directories are skipped, a link counts only if it resolves to a regular file
        inside ``directory``, and files still in transit (temp names) are never listed.
        """
        found = []
        for entry in self.scan(directory):
            if names.is_temp_name(entry.name) or not names.matches(pattern, entry.name):
                continue
            if entry.kind is Kind.LINK:
                target = self.resolve_link(directory, entry)
                if target is None or target.kind is not Kind.FILE:
                    continue
                entry = entry.with_target(target)
            if entry.kind is Kind.FILE:
                found.append(entry)
        found.sort(key=lambda e: e.name)
        return found

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
        target_dir = action.destination or directory
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

    # -- Open Task Framework's interface ----------------------------------------------------

    def supports_direct_transfer(self) -> bool:
        """True when this handler can copy straight to a destination handler."""
        return False

    def list_files(
        self, directory: str | None = None, file_pattern: str | None = None
    ) -> dict[str, dict[str, Any]]:
        """OTF: matching files as ``{name: {"size": bytes, "age": seconds}}``."""
        pattern = str(file_pattern or getattr(self.spec, "file_regex", ".*"))
        now = time.time()
        return {
            e.name: {"size": e.size, "age": e.age(now)}
            for e in self.list_entries(directory or self.spec.directory, pattern)
        }

    def transfer_files(
        self,
        files: list[str],
        remote_spec: Any = None,
        dest_remote_handler: TransferHandler | None = None,
    ) -> int:
        """OTF: copy ``files`` straight to ``dest_remote_handler`` (under temp names)."""
        if dest_remote_handler is None:
            raise UnsupportedOperation("transfer_files needs a destination handler")
        wanted = set(files)
        for entry in self.list_entries(self.spec.directory, ".*"):
            if entry.name in wanted:
                dest_remote_handler.receive(
                    self,
                    entry,
                    dest_remote_handler.temp_path(entry.name),
                    getattr(dest_remote_handler.spec, "mode_bits", None),
                )
        return 0

    def temp_path(self, final_name: str) -> str:
        return self.join(self.spec.directory, names.temp_name(final_name))

    def pull_files_to_worker(self, files: list[str], local_staging_directory: str) -> int:
        """OTF: copy ``files`` into a directory of this worker."""
        for name in files:
            names.check_plain_name(name, "file")
            local = os.path.join(local_staging_directory, name)
            with (
                self.open_read(self.join(self.spec.directory, name)) as reader,
                open(local, "wb") as writer,
            ):
                copy_stream(reader, writer)
        return 0

    def push_files_from_worker(
        self, local_staging_directory: str, file_list: Mapping[str, Any] | None = None
    ) -> int:
        """OTF: upload files of a worker directory here, under temp names."""
        listed = file_list or {n: {} for n in sorted(os.listdir(local_staging_directory))}
        for name in listed:
            names.check_plain_name(name, "file")
            with (
                open(os.path.join(local_staging_directory, name), "rb") as reader,
                self.open_write(self.temp_path(name)) as writer,
            ):
                copy_stream(reader, writer)
        return 0

    def pull_files(self, files: list[str]) -> int:
        """OTF pull mode (destination connects back to the source): not supported."""
        raise UnsupportedOperation(f"{self.protocol}: pull-mode transfers are not supported")

    def move_files_to_final_location(self, files: Iterable[str]) -> int:
        """OTF: rename each delivered temp file to its final name, replacing any old one.

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
        return 0

    def handle_post_copy_action(self, files: Iterable[str]) -> int:
        """OTF: move, rename or delete the source files after a successful copy."""
        self.apply_post_copy(self.post_copy_targets(files))
        return 0

    def tidy(self) -> None:
        """OTF: close connections."""
        self.close()

    def __enter__(self) -> TransferHandler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tidy()


class ExecutionHandler(abc.ABC):
    """OTF's remote execution handler: run ``spec['command']`` somewhere."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec

    @abc.abstractmethod
    def execute(self) -> bool:
        """Run the command; True when it succeeded."""

    def tidy(self) -> None:
        """Close connections."""
        return None
