"""NFSv4 I/O for transfers through libnfs: no kernel mount, no root-only syscalls.

Limits: symlinks are followed only when relative and inside the source directory
(an absolute target names the server's namespace, which cannot be checked from here);
``mode`` is applied with SETATTR after the write; times are set with microsecond
precision (NFSv4 SETATTR through libnfs ``utimes``).
"""

from __future__ import annotations

import ctypes
import io
import posixpath
import stat
import threading
from collections.abc import Iterator
from typing import BinaryIO, cast

from storeflow.models.transfer import NFSDestination, NFSProtocol, NFSServer, NFSSource
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.handler import Spec, TransferHandler
from storeflow.tasks.transfer.libnfs import Mount, NFSError, NFSStat64


def _path(path: str) -> str:
    return posixpath.normpath("/" + path.strip("/")) if path.strip("/") else "/"


class _NFSFile(io.RawIOBase):
    def __init__(self, mount: Mount, path: str, write: bool, sync: bool) -> None:
        super().__init__()
        self.mount = mount
        self.handle = mount.open(path, write=write)
        self.offset = 0
        self.writing = write
        self.sync = sync

    def readable(self) -> bool:
        return not self.writing

    def writable(self) -> bool:
        return self.writing

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if isinstance(buffer, bytearray):
            address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        else:
            address = ctypes.addressof(ctypes.c_char.from_buffer(view))
        got = self.mount.pread(self.handle, self.offset, address, len(view))
        self.offset += got
        return got

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        buf = (ctypes.c_char * len(view)).from_buffer_copy(view) if view.readonly else None
        address = (
            ctypes.addressof(buf)
            if buf is not None
            else ctypes.addressof(ctypes.c_char.from_buffer(view))
        )
        done = self.mount.pwrite(self.handle, self.offset, address, len(view))
        self.offset += done
        return done

    def close(self) -> None:
        if not self.closed:
            try:
                self.mount.close_file(self.handle, sync=self.sync and self.writing)
            finally:
                super().close()


class NFSTransfer(TransferHandler):
    """An NFSv4 export.  Paths are inside the export, '/'-separated."""

    protocol = "nfs"
    protocol_model = NFSProtocol
    source_model = NFSSource
    destination_model = NFSDestination

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self._server: NFSServer | None = None
        self._local = threading.local()
        self._mounts: list[Mount] = []
        self._lock = threading.Lock()

    def server(self) -> NFSServer:
        if self._server is None:
            protocol = self.spec.protocol
            server = getattr(protocol, "server", None)
            if server is None:
                from storeflow.blocks.remote import NFSRemote  # Prefect is only needed for blocks

                server = NFSRemote.load(getattr(protocol, "block", "")).server()  # type: ignore[union-attr]
            self._server = server
        return self._server

    def mount(self) -> Mount:
        """This thread's mount (a libnfs context must not be shared between threads)."""
        mount: Mount | None = getattr(self._local, "mount", None)
        if mount is None:
            s = self.server()
            try:
                mount = Mount(s.host, s.export, port=s.port, uid=s.uid, gid=s.gid)
            except NFSError as exc:
                raise self._fail("mount", f"{s.host}:{s.port}{s.export}", exc) from exc
            self._local.mount = mount
            with self._lock:
                self._mounts.append(mount)
        return mount

    @staticmethod
    def _entry(name: str, path: str, st: NFSStat64) -> Entry:
        return Entry(
            name=name,
            kind=Kind.of_mode(st.mode),
            path=path,
            size=st.size,
            mtime_ns=st.mtime * 1_000_000_000 + st.mtime_nsec,
            atime_ns=st.atime * 1_000_000_000 + st.atime_nsec,
            ctime_ns=st.ctime * 1_000_000_000 + st.ctime_nsec,
            mode=st.mode,
            uid=st.uid,
            gid=st.gid,
        )

    def scan(self, directory: str) -> Iterator[Entry]:
        directory = _path(directory)
        try:
            items = self.mount().listdir(directory)
        except NFSError as exc:
            raise self._fail("list", directory, exc) from exc
        for d in items:
            yield Entry(
                name=d.name,
                kind=Kind.of_mode(d.mode),
                path=posixpath.join(directory, d.name),
                size=d.size,
                mtime_ns=d.mtime_ns,
                atime_ns=d.atime_ns,
                ctime_ns=d.ctime_ns,
                mode=d.mode,
                uid=d.uid,
                gid=d.gid,
            )

    def resolve_link(self, directory: str, link: Entry) -> Entry | None:
        directory = _path(directory)
        try:
            target = self.mount().readlink(link.path)
        except NFSError:
            return None
        if target.startswith("/"):
            return None
        resolved = posixpath.normpath(posixpath.join(directory, target))
        if posixpath.commonpath([directory, resolved]) != directory or resolved == directory:
            return None
        try:
            st = self.mount().lstat(resolved)
        except NFSError:
            return None
        return self._entry(link.name, resolved, st)

    def open_read(self, path: str) -> BinaryIO:
        try:
            return cast(BinaryIO, _NFSFile(self.mount(), _path(path), False, False))
        except NFSError as exc:
            raise self._fail("open", path, exc) from exc

    def open_write(self, path: str) -> BinaryIO:
        try:
            return cast(BinaryIO, _NFSFile(self.mount(), _path(path), True, self.sync_writes))
        except NFSError as exc:
            raise self._fail("create", path, exc) from exc

    def rename(self, source: str, target: str) -> None:
        try:
            self.mount().rename(_path(source), _path(target))
        except NFSError as exc:
            raise self._fail("rename", f"{source} -> {target}", exc) from exc

    def delete(self, path: str) -> None:
        try:
            self.mount().unlink(_path(path))
        except NFSError as exc:
            raise self._fail("delete", path, exc) from exc

    def make_dirs(self, path: str) -> None:
        path = _path(path)
        if path == "/" or self.is_dir(path):
            return
        self.make_dirs(posixpath.dirname(path))
        try:
            self.mount().mkdir(path)
        except NFSError as exc:
            if not self.is_dir(path):
                raise self._fail("mkdir", path, exc) from exc

    def _stat(self, path: str) -> NFSStat64 | None:
        try:
            return self.mount().lstat(_path(path))
        except NFSError:
            return None

    def is_dir(self, path: str) -> bool:
        st = self._stat(path)
        return st is not None and stat.S_ISDIR(st.mode)

    def exists(self, path: str) -> bool:
        return self._stat(path) is not None

    def set_times(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        try:
            self.mount().utimes(_path(path), atime_ns, mtime_ns)
        except NFSError as exc:
            raise self._fail("set times of", path, exc) from exc

    def set_mode(self, path: str, mode: int) -> None:
        try:
            self.mount().chmod(_path(path), mode)
        except NFSError as exc:
            raise self._fail("chmod", path, exc) from exc

    def flush(self) -> None:
        # Writes were already COMMITted per file when sync_writes was set; see engine.
        return None

    def close(self) -> None:
        with self._lock:
            mounts, self._mounts = self._mounts, []
        for mount in mounts:
            mount.close()
        self._local = threading.local()
