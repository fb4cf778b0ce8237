"""The ``mirror`` transfer protocol: files of a local tree reached through a ``root``.

Its options differ from ``local``'s on purpose: the protocol object carries ``root`` (an
absolute directory) and every ``directory`` is a '/'-separated path inside it, the way an
export or a share is addressed; ".." stops at the root.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from typing import Any, BinaryIO, Literal

from pydantic import Field, field_validator

from storeflow.models.transfer import DestinationSpec, ProtocolBlock, SourceSpec
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.handler import TransferHandler


class MirrorProtocol(ProtocolBlock):
    name: Literal["mirror"]
    root: str = Field(min_length=1, description="Absolute directory the paths are inside")

    @field_validator("root")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError("must be an absolute path")
        return value


class MirrorSource(SourceSpec):
    protocol: MirrorProtocol


class MirrorDestination(DestinationSpec):
    protocol: MirrorProtocol


class MirrorTransfer(TransferHandler):
    protocol = "mirror"
    protocol_model = MirrorProtocol
    source_model = MirrorSource
    destination_model = MirrorDestination

    @classmethod
    def provider_protocol(cls, block: str | None, directory: str) -> dict[str, Any]:
        """A mirror provider names no credentials: its directory is inside root '/'."""
        if block is not None:
            raise ValueError("a mirror provider takes no 'block'")
        return {"name": cls.protocol, "root": "/"}

    def real(self, path: str) -> str:
        root = getattr(self.spec.protocol, "root", "/")
        inner = posixpath.normpath("/" + path.strip("/")).lstrip("/")
        return os.path.join(root, inner) if inner else root

    def scan(self, directory: str) -> Iterator[Entry]:
        try:
            with os.scandir(self.real(directory)) as found:
                for item in found:
                    st = item.stat(follow_symlinks=False)
                    yield Entry(
                        name=item.name,
                        kind=Kind.of_mode(st.st_mode),
                        path=posixpath.join(directory, item.name),
                        size=st.st_size,
                        mtime_ns=st.st_mtime_ns,
                        atime_ns=st.st_atime_ns,
                    )
        except OSError as exc:
            raise self._fail("list", directory, exc) from exc

    def open_read(self, path: str) -> BinaryIO:
        try:
            return open(self.real(path), "rb", buffering=0)
        except OSError as exc:
            raise self._fail("open", path, exc) from exc

    def open_write(self, path: str) -> BinaryIO:
        try:
            return open(self.real(path), "wb", buffering=0)
        except OSError as exc:
            raise self._fail("create", path, exc) from exc

    def rename(self, source: str, target: str) -> None:
        try:
            os.replace(self.real(source), self.real(target))
        except OSError as exc:
            raise self._fail("rename", f"{source} -> {target}", exc) from exc

    def delete(self, path: str) -> None:
        try:
            os.unlink(self.real(path))
        except OSError as exc:
            raise self._fail("delete", path, exc) from exc

    def make_dirs(self, path: str) -> None:
        try:
            os.makedirs(self.real(path), exist_ok=True)
        except OSError as exc:
            raise self._fail("mkdir", path, exc) from exc

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self.real(path))

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.real(path))

    def set_times(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        try:
            os.utime(self.real(path), ns=(atime_ns, mtime_ns))
        except OSError as exc:
            raise self._fail("set times of", path, exc) from exc
