"""SMB I/O for transfers through smbprotocol's ``smbclient``.

Paths inside the share are '/'-separated in definitions and converted to UNC here.
Limits: SMB has no POSIX permissions (``mode`` is refused by the destination model);
Samba resolves symlinks on the server, so a client sees a link as the file it points
to and cannot judge where it leads: keeping links inside the share is the server's
``wide links = no`` (Samba's default).  Times have 100 ns precision.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO, cast

import smbclient
from smbprotocol.exceptions import SMBException, SMBOSError

from models.transfer import SMBCredentials
from tasks.transfer.entries import Entry, Kind
from tasks.transfer.handler import Spec, TransferHandler

# FILE_ATTRIBUTE_* bits of MS-FSCC 2.6.
_DIRECTORY = 0x10
_REPARSE_POINT = 0x400
_EPOCH_NS = 0


def _ns(value: Any) -> int:
    return int(value.timestamp() * 1_000_000) * 1000 if value is not None else _EPOCH_NS


class SMBTransfer(TransferHandler):
    """A directory on an SMB share."""

    protocol = "smb"

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self._credentials: SMBCredentials | None = None
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._registered = False

    def credentials(self) -> SMBCredentials:
        if self._credentials is None:
            protocol = self.spec.protocol
            credentials = getattr(protocol, "credentials", None)
            if credentials is None:
                from blocks.remote import SMBRemote  # Prefect is only needed for blocks

                block = SMBRemote.load(getattr(protocol, "block", ""))
                credentials = block.credentials()  # type: ignore[union-attr]
            self._credentials = credentials
        return self._credentials

    def _kwargs(self) -> dict[str, Any]:
        c = self.credentials()
        kwargs = {
            "username": c.username,
            "password": c.password.get_secret_value(),
            "port": c.port,
            "connection_cache": self._cache,
        }
        with self._lock:
            if not self._registered:
                try:
                    smbclient.register_session(c.host, **kwargs)
                except (SMBException, OSError, ValueError) as exc:
                    raise self._fail("connect to", f"{c.host}:{c.port}", exc) from exc
                self._registered = True
        return kwargs

    def unc(self, path: str) -> str:
        c = self.credentials()
        inner = posixpath.normpath("/" + path.strip("/")).strip("/")
        tail = "\\" + inner.replace("/", "\\") if inner else ""
        return f"\\\\{c.host}\\{c.share}{tail}"

    def _call(self, operation: str, path: str, func: Any, *args: Any, **extra: Any) -> Any:
        try:
            return func(*args, **self._kwargs(), **extra)
        except (SMBException, SMBOSError, OSError, ValueError) as exc:
            raise self._fail(operation, path, exc) from exc

    def scan(self, directory: str) -> Iterator[Entry]:
        items = self._call(
            "list", directory, lambda **kw: list(smbclient.scandir(self.unc(directory), **kw))
        )
        for item in items:
            info = item.smb_info
            attrs = info.file_attributes
            if attrs & _REPARSE_POINT:
                kind = Kind.LINK
            elif attrs & _DIRECTORY:
                kind = Kind.DIR
            else:
                kind = Kind.FILE
            yield Entry(
                name=item.name,
                kind=kind,
                path=posixpath.join(directory, item.name),
                size=info.end_of_file,
                mtime_ns=_ns(info.last_write_time),
                atime_ns=_ns(info.last_access_time),
                ctime_ns=_ns(info.change_time),
            )

    def open_read(self, path: str) -> BinaryIO:
        return cast(
            BinaryIO,
            self._call("open", path, smbclient.open_file, self.unc(path), mode="rb", buffering=0),
        )

    def open_write(self, path: str) -> BinaryIO:
        return cast(
            BinaryIO,
            self._call("create", path, smbclient.open_file, self.unc(path), mode="wb", buffering=0),
        )

    def rename(self, source: str, target: str) -> None:
        self._call(
            "rename", f"{source} -> {target}", smbclient.replace, self.unc(source), self.unc(target)
        )

    def delete(self, path: str) -> None:
        self._call("delete", path, smbclient.remove, self.unc(path))

    def make_dirs(self, path: str) -> None:
        self._call("mkdir", path, smbclient.makedirs, self.unc(path), exist_ok=True)

    def _stat(self, path: str) -> Any:
        try:
            return smbclient.lstat(self.unc(path), **self._kwargs())
        except (SMBException, SMBOSError, OSError, ValueError):
            return None

    def is_dir(self, path: str) -> bool:
        st = self._stat(path)
        return st is not None and bool(st.st_file_attributes & _DIRECTORY)

    def exists(self, path: str) -> bool:
        return self._stat(path) is not None

    def set_times(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self._call("set times of", path, smbclient.utime, self.unc(path), ns=(atime_ns, mtime_ns))

    def close(self) -> None:
        with self._lock:
            if self._registered:
                smbclient.reset_connection_cache(connection_cache=self._cache)
                self._registered = False
