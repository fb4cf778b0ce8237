"""Big uploads through Samba's own ``smbclient`` binary (several times smbprotocol's speed).

smbprotocol signs and packs every request in Python; for a large file that CPU is the
limit.  :func:`put` streams a file to one name on a share with ``smbclient put - NAME``
(the data on its stdin) and leaves everything else (times, rename into place, cleanup) to
the smbprotocol code.  Credentials go through an authentication file (``-A``, mode 0600 in
a private directory removed afterwards): never on a command line, in an environment or
in a log.  Signing follows ``smbclient``'s own policy: used when the server requires it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from storeflow.models.transfer import SMBCredentials
from storeflow.tasks.transfer.streams import CHUNK, BytesDone, Readable

# The one command passed to smbclient is ``put - NAME``: NAME must survive its tokenizer.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]{1,255}")
_BAD_IN_VALUE = ("\n", "\r", "\0")
_CONNECT_ERRORS = (
    "session setup failed",
    "tree connect failed",
    "Connection to",
    "NT_STATUS_LOGON_FAILURE",
    "NT_STATUS_CONNECTION_REFUSED",
)


class SmbclientError(Exception):
    """``smbclient`` failed; ``connect`` tells a login/connection failure from a write."""

    def __init__(self, reason: str, connect: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect = connect


def binary() -> str | None:
    return shutil.which("smbclient")


def usable(credentials: SMBCredentials, directory: str, name: str) -> bool:
    """True when these values pass through smbclient's argument and auth-file parsers
    unchanged; otherwise the caller keeps to smbprotocol."""
    password = credentials.password.get_secret_value()
    user = credentials.username
    return (
        _PLAIN_NAME.fullmatch(name) is not None
        and bool(password)
        and password[0] not in " \t"  # the auth-file parser strips leading blanks
        and not any(c in password for c in _BAD_IN_VALUE)
        and user[0] not in " \t"
        and not any(c in user for c in ("%", "@", *_BAD_IN_VALUE))  # '%' splits a password
        and not any(c in credentials.host + credentials.share for c in "/\\ \t\n\r\0")
        and not any(c in directory for c in _BAD_IN_VALUE)
    )


def _private_dir() -> str:
    shm = "/dev/shm"  # tmpfs: the password never reaches a disk when it is there
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None
    return tempfile.mkdtemp(prefix="storeflow-smb-", dir=base)


def _auth_file(directory: str, credentials: SMBCredentials) -> str:
    path = os.path.join(directory, "auth")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f"username = {credentials.username}\n")
        out.write(f"password = {credentials.password.get_secret_value()}\n")
    return path


def _environment() -> dict[str, str]:
    # Nothing inherited that smbclient reads as credentials (USER, PASSWD, PASSWD_FD, ...).
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


def _regular_fd(reader: Any) -> int | None:
    """The file descriptor of ``reader`` if it is a regular file at offset 0."""
    try:
        fd = int(reader.fileno())
        if stat.S_ISREG(os.fstat(fd).st_mode) and os.lseek(fd, 0, os.SEEK_CUR) == 0:
            return fd
    except (AttributeError, OSError, ValueError):
        pass
    return None


def put(
    smbclient: str,
    credentials: SMBCredentials,
    directory: str,
    name: str,
    reader: Readable,
    on_bytes: BytesDone | None = None,
    timeout: float = 3600.0,
    poll: float = 0.25,
) -> int:
    """Write everything ``reader`` holds to ``directory/name`` on the share; return bytes.

    A regular local file is handed to smbclient as its stdin (no copy through this
    process, progress read from the shared file offset); anything else is pumped
    through a pipe.  Raises :class:`SmbclientError` on any failure, and on ``timeout``
    after stopping the process by its PID.
    """
    private = _private_dir()
    try:
        auth = _auth_file(private, credentials)
        log_path = os.path.join(private, "out")
        fd = _regular_fd(reader)
        command = [
            smbclient,
            f"//{credentials.host}/{credentials.share}",
            "--port",
            str(credentials.port),
            "--authentication-file",
            auth,
            "--use-kerberos=off",
            f"--directory=/{directory.strip('/')}",
            "--command",
            f"put - {name}",
        ]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                stdin=fd if fd is not None else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_environment(),
                start_new_session=True,
                close_fds=True,
            )
        sent = [0]
        pump_error: list[BaseException] = []
        pump: threading.Thread | None = None
        if fd is None:
            pump = threading.Thread(
                target=_pump, args=(reader, proc, sent, on_bytes, pump_error), daemon=True
            )
            pump.start()
        deadline = time.monotonic() + timeout
        code: int | None = None
        try:
            while code is None:
                try:
                    code = proc.wait(timeout=poll)
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise SmbclientError(
                            f"smbclient timed out after {timeout:.0f} s", False
                        ) from None
                    if fd is not None:
                        _report(os.lseek(fd, 0, os.SEEK_CUR), sent, on_bytes)
        finally:
            if code is None:  # timed out or interrupted
                proc.kill()  # by its PID: only the process started here
                proc.wait()
        if pump is not None:
            pump.join()
            if pump_error:
                raise SmbclientError(f"reading the source failed: {pump_error[0]}", False)
        if code != 0:
            with open(log_path, "rb") as log_in:
                output = log_in.read(65536).decode("utf-8", "replace")
            reason = _reason(output, code)
            raise SmbclientError(reason, any(e in output for e in _CONNECT_ERRORS))
        if fd is not None:
            _report(os.lseek(fd, 0, os.SEEK_CUR), sent, on_bytes)
        return sent[0]
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _report(position: int, sent: list[int], on_bytes: BytesDone | None) -> None:
    if position > sent[0]:
        if on_bytes is not None:
            on_bytes(position - sent[0])
        sent[0] = position


def _pump(
    reader: Readable,
    proc: subprocess.Popen[bytes],
    sent: list[int],
    on_bytes: BytesDone | None,
    errors: list[BaseException],
) -> None:
    assert proc.stdin is not None
    buffer = memoryview(bytearray(CHUNK))
    write: Callable[[memoryview], Any] = proc.stdin.write
    try:
        while got := reader.readinto(buffer):
            write(buffer[:got])
            sent[0] += got
            if on_bytes is not None:
                on_bytes(got)
    except BrokenPipeError:
        pass  # smbclient stopped: its exit status says why
    except BaseException as exc:  # reported by put(); smbclient is stopped below
        errors.append(exc)
        proc.kill()
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def _reason(output: str, code: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    useful = [line for line in lines if "NT_STATUS" in line or "failed" in line]
    detail = (useful or lines or [""])[-1]
    return f"smbclient exited with {code}: {detail}" if detail else f"smbclient exited with {code}"


class GetStream:
    """A file on a share read through ``smbclient get NAME -`` (its stdout), for big
    downloads: Samba's C client verifies and copies the answers several times faster than
    smbprotocol.  ``readinto`` raises at the end of the data unless smbclient exited 0
    after sending exactly ``size`` bytes, so a failed or short read never looks like a
    complete file.  The process is stopped by its PID when it outlasts ``timeout`` or the
    reader is closed early."""

    def __init__(
        self,
        smbclient: str,
        credentials: SMBCredentials,
        directory: str,
        name: str,
        size: int,
        timeout: float = 3600.0,
    ) -> None:
        self.size = size
        self.received = 0
        self._private = _private_dir()
        try:
            auth = _auth_file(self._private, credentials)
            self._log_path = os.path.join(self._private, "out")
            command = [
                smbclient,
                f"//{credentials.host}/{credentials.share}",
                "--port",
                str(credentials.port),
                "--authentication-file",
                auth,
                "--use-kerberos=off",
                f"--directory=/{directory.strip('/')}",
                "--command",
                f"get {name} -",
            ]
            with open(self._log_path, "wb") as log:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=_environment(),
                    start_new_session=True,
                    close_fds=True,
                )
        except BaseException:
            shutil.rmtree(self._private, ignore_errors=True)
            raise
        _widen_pipe(self._proc.stdout)
        self._timer = threading.Timer(timeout, self._proc.kill)  # by PID: only this one
        self._timer.daemon = True
        self._timer.start()
        self._done = False

    def readinto(self, buffer: Any) -> int:
        assert self._proc.stdout is not None
        got = cast(Any, self._proc.stdout).readinto(buffer)
        if got:
            self.received += got
            if self.received > self.size:
                raise SmbclientError(f"smbclient sent more than the {self.size} bytes", False)
            return got
        self._finish()
        return 0

    def splice_into(self, fd: int, on_bytes: BytesDone | None = None) -> int:
        """Move the data into the file ``fd`` in the kernel (no copy through this
        process), then check as at the end of ``readinto``; return the bytes."""
        assert self._proc.stdout is not None
        pipe = self._proc.stdout.fileno()
        while True:
            moved = os.splice(pipe, fd, _PIPE_SIZE)
            if not moved:
                break
            self.received += moved
            if on_bytes is not None:
                on_bytes(moved)
        self._finish()
        return self.received

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        code = self._proc.wait(timeout=60)
        self._timer.cancel()
        if code != 0:
            with open(self._log_path, "rb") as log_in:
                output = log_in.read(65536).decode("utf-8", "replace")
            raise SmbclientError(_reason(output, code), any(e in output for e in _CONNECT_ERRORS))
        if self.received != self.size:
            raise SmbclientError(f"smbclient sent {self.received} of {self.size} bytes", False)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._timer.cancel()
        if self._proc.poll() is None:
            self._proc.kill()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc.wait()
        shutil.rmtree(self._private, ignore_errors=True)

    def __enter__(self) -> GetStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Linux's F_SETPIPE_SZ: a 1 MiB pipe lets smbclient write whole read answers at once.
_F_SETPIPE_SZ = 1031
_PIPE_SIZE = 1 << 20


def _widen_pipe(stream: Any) -> None:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, _PIPE_SIZE)
