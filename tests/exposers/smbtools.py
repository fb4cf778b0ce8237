"""A plain SMB client for tests (smbprotocol's low-level API): one connection, one session,
tree connects on demand, so "a new session" and "an open session" are what they say."""

from __future__ import annotations

import uuid
from types import TracebackType

from smbprotocol.connection import Connection
from smbprotocol.exceptions import SMBException
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    ShareAccess,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

TIMEOUT = 10


class SmbClient:
    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.host = host
        self.connection = Connection(uuid.uuid4(), host, port)  # smbd refuses unsigned trees
        self.connection.connect(timeout=TIMEOUT)
        self.session = Session(self.connection, username, password, require_encryption=False)
        try:
            self.session.connect()
        except BaseException:
            self.connection.disconnect()
            raise

    def tree(self, share: str) -> TreeConnect:
        tree = TreeConnect(self.session, rf"\\{self.host}\{share}")
        tree.connect()
        return tree

    def close(self) -> None:
        try:
            self.connection.disconnect(close=True)
        except SMBException:  # a tree the server already closed: just drop the socket
            self.connection.disconnect(close=False)

    def __enter__(self) -> SmbClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _open(tree: TreeConnect, name: str, write: bool) -> Open:
    handle = Open(tree, name)
    access = FilePipePrinterAccessMask.GENERIC_READ
    if write:
        access |= FilePipePrinterAccessMask.GENERIC_WRITE
    handle.create(
        ImpersonationLevel.Impersonation,
        access,
        FileAttributes.FILE_ATTRIBUTE_NORMAL,
        ShareAccess.FILE_SHARE_READ,
        CreateDisposition.FILE_OVERWRITE_IF if write else CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    return handle


def write_file(tree: TreeConnect, name: str, data: bytes) -> None:
    handle = _open(tree, name, write=True)
    try:
        handle.write(data, 0)
    finally:
        handle.close()


def read_file(tree: TreeConnect, name: str) -> bytes:
    handle = _open(tree, name, write=False)
    try:
        return bytes(handle.read(0, handle.end_of_file))
    finally:
        handle.close()
