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
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

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
