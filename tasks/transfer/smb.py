"""SMB I/O for transfers through smbprotocol's ``smbclient``.

Paths inside the share are '/'-separated in definitions and converted to UNC here.
Limits: SMB has no POSIX permissions (``mode`` is refused by the destination model);
Samba resolves symlinks on the server, so a client sees a link as the file it points
to and cannot judge where it leads: keeping links inside the share is the server's
``wide links = no`` (Samba's default).  Times have 100 ns precision.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from storeflow.models.transfer import SMBCredentials, SMBDestination, SMBProtocol, SMBSource
from storeflow.tasks.transfer import smbput
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.handler import Spec, TransferHandler
from storeflow.tasks.transfer.streams import BytesDone, Readable

# FILE_ATTRIBUTE_* bits of MS-FSCC 2.6.
_DIRECTORY = 0x10
_REPARSE_POINT = 0x400
_EPOCH_NS = 0

# smbprotocol's file objects send one request and wait for its answer; writing with several
# requests in flight keeps the server busy while this process signs and sends the next.
# Measured against a local smbd (SMB 3.1.1, signed, 8 MiB max write): 1 MiB x 4 in flight
# is 2-3x faster than one 4 MiB write at a time; bigger requests gain nothing (credits).
WRITE_CHUNK = 1 << 20
WRITES_IN_FLIGHT = 4
# Reads the same way: up to READS_IN_FLIGHT requests of READ_CHUNK bytes outstanding.
READ_CHUNK = 1 << 20
READS_IN_FLIGHT = 4

# Files at least this big are written by Samba's ``smbclient`` when it is installed (see
# tasks/transfer/smbput.py): about 3x smbprotocol's speed.  None: always smbprotocol.
SMBCLIENT_THRESHOLD: int | None = 64 << 20
# smbclient is stopped (by PID) when it runs longer than SMBCLIENT_TIMEOUT seconds plus the
# file's size at SMBCLIENT_MIN_RATE.
SMBCLIENT_TIMEOUT = 300.0
SMBCLIENT_MIN_RATE = 1 << 20  # bytes per second


def _smb() -> Any:
    """``smbclient``, imported on first use.  It pulls in spnego and cryptography (0.1 to
    0.3 s), and validating any definition loads every registered protocol's handler:
    a local-only transfer must not pay for SMB."""
    import smbclient

    return smbclient


def _errors() -> tuple[type[BaseException], ...]:
    """What an SMB call raises for a refused or failed operation."""
    from smbprotocol.exceptions import SMBException, SMBOSError

    return (SMBException, SMBOSError, OSError, ValueError)


def _ns(value: Any) -> int:
    return int(value.timestamp() * 1_000_000) * 1000 if value is not None else _EPOCH_NS


class SMBTransfer(TransferHandler):
    """A directory on an SMB share."""

    protocol = "smb"
    protocol_model = SMBProtocol
    source_model = SMBSource
    destination_model = SMBDestination

    @classmethod
    def preload(cls) -> None:
        _smb()
        _errors()

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self._credentials: SMBCredentials | None = None
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._registered = False
        #: Size from which uploads go through ``smbclient`` (None: never).
        self.smbclient_threshold = SMBCLIENT_THRESHOLD

    def credentials(self) -> SMBCredentials:
        if self._credentials is None:
            protocol = self.spec.protocol
            credentials = getattr(protocol, "credentials", None)
            if credentials is None:
                from storeflow.blocks.remote import SMBRemote  # Prefect is only needed for blocks

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
                    _smb().register_session(c.host, **kwargs)
                except _errors() as exc:
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
        except _errors() as exc:
            raise self._fail(operation, path, exc) from exc

    def scan(self, directory: str) -> Iterator[Entry]:
        items = self._call(
            "list", directory, lambda **kw: list(_smb().scandir(self.unc(directory), **kw))
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
        """The file for reading, with several read requests in flight (see
        `PipelinedReader`): whatever destination streams from it gets the speed."""
        threshold = self.smbclient_threshold
        tool = smbput.binary() if threshold is not None else None
        directory, name = posixpath.split(path)
        if tool is not None and smbput.usable(self.credentials(), directory, name):
            st = self._call("stat", path, _smb().stat, self.unc(path))
            if threshold is not None and st.st_size >= threshold:
                return cast(BinaryIO, self._get_stream(tool, path, int(st.st_size)))
        raw = self._call("open", path, _smb().open_file, self.unc(path), mode="rb", buffering=0)
        return cast(BinaryIO, PipelinedReader(raw))

    def _get_stream(self, tool: str, path: str, size: int) -> smbput.GetStream:
        """A big file through ``smbclient get`` (as big uploads go through ``put``)."""
        directory, name = posixpath.split(path)
        timeout = SMBCLIENT_TIMEOUT + size / SMBCLIENT_MIN_RATE
        return smbput.GetStream(tool, self.credentials(), directory, name, size, timeout)

    def open_write(self, path: str) -> BinaryIO:
        return cast(
            BinaryIO,
            self._call("create", path, _smb().open_file, self.unc(path), mode="wb", buffering=0),
        )

    def receive(
        self,
        source: TransferHandler,
        entry: Entry,
        path: str,
        mode: int | None,
        on_bytes: BytesDone | None = None,
    ) -> None:
        """Stream ``entry`` into ``path`` with several write requests in flight, or for a big
        file through ``smbclient`` when it is installed."""
        threshold = self.smbclient_threshold
        if threshold is not None and entry.size >= threshold:
            tool = smbput.binary()
            directory, name = posixpath.split(path)
            if tool is not None and smbput.usable(self.credentials(), directory, name):
                self._receive_with_smbclient(tool, source, entry, path, mode, on_bytes)
                return
        with source.open_read(entry.path) as reader, self.open_write(path) as writer:
            try:
                pipelined_write(cast(Readable, reader), writer, on_bytes, durable=self.sync_writes)
            except _errors() as exc:
                raise self._fail("write", path, exc) from exc
        self.finish_file(path, entry, mode)

    def _receive_with_smbclient(
        self,
        tool: str,
        source: TransferHandler,
        entry: Entry,
        path: str,
        mode: int | None,
        on_bytes: BytesDone | None,
    ) -> None:
        c = self.credentials()
        directory, name = posixpath.split(path)
        timeout = SMBCLIENT_TIMEOUT + entry.size / SMBCLIENT_MIN_RATE
        try:
            with source.open_read(entry.path) as reader:
                try:
                    sent = smbput.put(
                        tool, c, directory, name, cast(Readable, reader), on_bytes, timeout
                    )
                except smbput.SmbclientError as exc:
                    if exc.connect:
                        raise self._fail("connect to", f"{c.host}:{c.port}", exc) from exc
                    raise self._fail("write", path, exc) from exc
            st = self._call("stat", path, _smb().stat, self.unc(path))
            if st.st_size != sent:
                raise self._fail(
                    "write", path, OSError(f"{st.st_size} bytes arrived of {sent} sent")
                )
            if self.sync_writes:
                # smbclient does not FLUSH: do it here, as pipelined_write's close does.
                with self._call(
                    "flush", path, _smb().open_file, self.unc(path), mode="ab", buffering=0
                ) as opened:
                    opened._flush = True
                    opened.flush()
            self.finish_file(path, entry, mode)
        except BaseException:
            with contextlib.suppress(Exception):
                self.delete(path)
            raise

    def rename(self, source: str, target: str) -> None:
        self._call(
            "rename", f"{source} -> {target}", _smb().replace, self.unc(source), self.unc(target)
        )

    def delete(self, path: str) -> None:
        self._call("delete", path, _smb().remove, self.unc(path))

    def make_dirs(self, path: str) -> None:
        self._call("mkdir", path, _smb().makedirs, self.unc(path), exist_ok=True)

    def _stat(self, path: str) -> Any:
        try:
            return _smb().lstat(self.unc(path), **self._kwargs())
        except _errors():
            return None

    def is_dir(self, path: str) -> bool:
        st = self._stat(path)
        return st is not None and bool(st.st_file_attributes & _DIRECTORY)

    def exists(self, path: str) -> bool:
        return self._stat(path) is not None

    def set_times(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        self._call("set times of", path, _smb().utime, self.unc(path), ns=(atime_ns, mtime_ns))

    def close(self) -> None:
        with self._lock:
            if self._registered:
                _smb().reset_connection_cache(connection_cache=self._cache)
                self._registered = False


def pipelined_write(
    reader: Readable,
    writer: Any,
    on_bytes: BytesDone | None = None,
    chunk: int = WRITE_CHUNK,
    depth: int = WRITES_IN_FLIGHT,
    durable: bool = False,
) -> int:
    """Copy ``reader`` to the smbclient raw file ``writer`` (opened ``wb``, unbuffered)
    from offset 0, keeping up to ``depth`` write requests outstanding; return the bytes.

    Every request is answered before this returns (or raises): a short or failed write
    raises, so the file is complete exactly when this returns normally.  ``durable``:
    an SMB2 FLUSH is sent at the end (the server fsyncs the file), as the engine asks
    when the source is deleted afterwards; otherwise, like ``smbclient put`` and the
    local handler, the data is left to the server's own write-back.
    """
    from smbprotocol import MAX_PAYLOAD_SIZE

    fd = writer.fd
    conn = fd.connection
    sid = fd.tree_connect.session.session_id
    tid = fd.tree_connect.tree_connect_id
    chunk = max(MAX_PAYLOAD_SIZE, min(chunk, conn.max_write_size))
    wanted_credits = depth * ((chunk - 1) // MAX_PAYLOAD_SIZE + 1)
    pending: deque[tuple[Any, Callable[[Any], int], int, int]] = deque()
    buffer = memoryview(bytearray(chunk))
    offset = 0

    def credits() -> int:
        return int(conn.sequence_window["high"] - conn.sequence_window["low"])

    def charge(size: int) -> int:
        return (size - 1) // MAX_PAYLOAD_SIZE + 1

    def settle() -> None:
        request, receive, at, size = pending.popleft()
        written = receive(request)
        if written != size:
            raise OSError(f"short write at offset {at}: {written} of {size} bytes")
        if on_bytes is not None:
            on_bytes(size)

    try:
        while got := reader.readinto(buffer):
            start = 0
            while start < got:
                size = got - start
                # Wait for answers (they grant credits) until this request may be sent.
                while pending and (len(pending) >= depth or credits() < charge(size)):
                    settle()
                # Nothing outstanding and still short of credits: send what they allow.
                size = min(size, max(1, credits()) * MAX_PAYLOAD_SIZE)
                message, receive = fd.write(
                    bytes(buffer[start : start + size]), offset=offset, send=False
                )
                # Ask for enough credits to keep `depth` full-size requests in flight.
                after = credits() - charge(size)
                request = conn.send(
                    message,
                    sid=sid,
                    tid=tid,
                    credit_request=charge(size) + max(0, wanted_credits - after),
                )
                pending.append((request, receive, offset, size))
                start += size
                offset += size
        while pending:
            settle()
    except BaseException:
        # Collect what is still outstanding so the connection stays usable.
        while pending:
            with contextlib.suppress(Exception):
                settle()
        raise
    # Keep the file object's own view consistent.  smbclient's close() never flushes:
    # send the FLUSH (the server fsyncs) here when asked.
    writer._offset = offset
    fd.end_of_file = max(fd.end_of_file, offset)
    writer._flush = durable
    if durable:
        writer.flush()
    return offset


class PipelinedReader:
    """A file opened for reading on a share, read ahead with ``depth`` requests in flight.

    smbprotocol's own ``readinto`` sends one request and waits for its answer: the server
    idles while this process verifies and copies each answer.  Here the next requests are
    already on the wire; answers are consumed in order, so ``readinto`` returns the bytes
    in file order, exactly as a plain read would.  The file's size is the one the open
    returned: a file that grows while it is read is read up to that size (as a listing's
    size), one that shrinks ends early (a short answer ends the stream).
    """

    def __init__(self, raw: Any, chunk: int = READ_CHUNK, depth: int = READS_IN_FLIGHT) -> None:
        from smbprotocol import MAX_PAYLOAD_SIZE

        self.raw = raw
        self._fd = raw.fd
        self._conn = self._fd.connection
        self._payload = MAX_PAYLOAD_SIZE
        self._chunk = max(MAX_PAYLOAD_SIZE, min(chunk, self._conn.max_read_size))
        self._depth = depth
        self._wanted = depth * self._charge(self._chunk)
        self._size = int(self._fd.end_of_file)
        self._sent = 0  # bytes requested so far
        self._pending: deque[tuple[Any, Callable[[Any], bytes], int]] = deque()
        self._left = memoryview(b"")
        self._ended = False

    def _charge(self, size: int) -> int:
        return (size - 1) // self._payload + 1

    def _credits(self) -> int:
        return int(self._conn.sequence_window["high"] - self._conn.sequence_window["low"])

    def _fill(self) -> None:
        """Send requests until ``depth`` are outstanding (credits permitting)."""
        while not self._ended and self._sent < self._size and len(self._pending) < self._depth:
            size = min(self._chunk, self._size - self._sent)
            if self._credits() < self._charge(size):
                if self._pending:
                    return  # answers grant credits: send more after the next one
                size = max(1, self._credits()) * self._payload
                size = min(size, self._size - self._sent)
            message, receive = self._fd.read(self._sent, size, send=False)
            after = self._credits() - self._charge(size)
            request = self._conn.send(
                message,
                sid=self._fd.tree_connect.session.session_id,
                tid=self._fd.tree_connect.tree_connect_id,
                credit_request=self._charge(size) + max(0, self._wanted - after),
            )
            self._pending.append((request, receive, size))
            self._sent += size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if not self._left:
            self._fill()
            if not self._pending:
                return 0
            request, receive, size = self._pending.popleft()
            data = receive(request)
            if len(data) < size:
                self._ended = True  # the file shrank: what is left is not there
                self._drain()
            self._fill()
            self._left = memoryview(data)
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            chunk = bytearray(self._chunk)
            while got := self.readinto(chunk):
                parts.append(bytes(chunk[:got]))
            return b"".join(parts)
        out = bytearray(size)
        got = self.readinto(out)
        return bytes(out[:got])

    def _drain(self) -> None:
        """Collect every outstanding answer, so the connection stays usable."""
        while self._pending:
            request, receive, _ = self._pending.popleft()
            with contextlib.suppress(Exception):
                receive(request)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._drain()
        self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)

    def __enter__(self) -> PipelinedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
