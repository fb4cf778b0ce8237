"""Copying bytes between file objects with progress reporting."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Protocol, cast

# Large enough that SMB and NFS send full-size requests, small enough that progress of a
# big file moves often.
CHUNK = 4 * 1024 * 1024

BytesDone = Callable[[int], None]


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Writable(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


def copy_stream(
    reader: IO[bytes] | Readable, writer: IO[bytes] | Writable, on_bytes: BytesDone | None = None
) -> int:
    """Copy until EOF; return the byte count.  Short writes are retried."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    total = 0
    while True:
        got = cast(Readable, reader).readinto(view)
        if not got:
            return total
        chunk = view[:got]
        while chunk:
            written = writer.write(chunk)
            written = len(chunk) if written is None else written
            chunk = chunk[written:]
        total += got
        if on_bytes is not None:
            on_bytes(got)
