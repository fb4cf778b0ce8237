"""What the warm runner and its clients share: where the socket lives, how messages are
framed, and the fingerprint that says whether a runner can serve a command.

Standard library only (the client imports this before anything else), and no more of it
than the client needs: `typing` only for the type checker (2 ms of every command).
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import struct
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: STOREFLOW_WARM: "auto" (use a running warm runner when it fits, else run here),
#: "off" (always run here), "require" (fail when no warm runner can take the command).
MODE_ENV = "STOREFLOW_WARM"
MODES = ("auto", "off", "require")
PROTOCOL = 1
#: A request carries the whole environment; anything near this is not a request.
MAX_MESSAGE = 4 << 20
#: A request is an object of lists and string maps: two levels deep. A message nested
#: deeper than this is refused before parsing (200k nested `[` would exhaust the
#: parser's recursion limit).
MAX_DEPTH = 8
_HEADER = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")
# A JSON string (escapes included): brackets inside one do not nest anything.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)

#: Packages whose code a warm runner has loaded: a change to any of them makes it stale.
#: Every folder storeflow/ links (tests/warm/test_wire.py checks): the runner imports
#: the CLI and the services too, and its children run them.
PACKAGES = ("flows", "tasks", "blocks", "sandbox", "models", "cli", "services")
#: Environment that shapes what was imported or configured before the fork.
SETTING_PREFIXES = ("PREFECT_", "STOREFLOW_")
SETTING_NAMES = ("PYTHONPATH", "PYTHONHOME", "DO_NOT_TRACK")


class WireError(Exception):
    """The peer broke the protocol or went away mid-message."""


class UnsafeRuntimeDir(Exception):
    """The directory for the socket is not this user's private directory."""


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket, as the
    kernel recorded it (SO_PEERCRED): the listener's at listen(), the client's at connect()."""
    pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return pid, uid


def recorded_pid(pid_path: str) -> int | None:
    """The PID a warm runner wrote in its pid file; None when there is none to read."""
    try:
        with open(pid_path, encoding="ascii") as file:
            text = file.read(32).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < len(text) < 11 else None


def mode(env: dict[str, str]) -> str:
    value = env.get(MODE_ENV, "auto").strip().lower() or "auto"
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r}: must be one of {', '.join(MODES)}")
    return value


# Paths are plain strings here: pathlib alone would add ~10 ms to every command's start.


def storeflow_home(env: dict[str, str]) -> str:
    # Same rule as models.settings.storeflow_home, which this module cannot import.
    raw = env.get("STOREFLOW_HOME") or os.path.join(os.path.expanduser("~"), ".storeflow")
    return os.path.abspath(os.path.expanduser(raw))


def runtime_dir(env: dict[str, str]) -> str:
    """This user's private directory for sockets: $XDG_RUNTIME_DIR/storeflow or
    /tmp/storeflow-<uid> (short paths: a socket path must fit in 107 bytes)."""
    base = env.get("XDG_RUNTIME_DIR")
    return os.path.join(base, "storeflow") if base else f"/tmp/storeflow-{os.getuid()}"


def ensure_private_dir(path: str, create: bool) -> str:
    """`path` as a directory only this user can enter; refuse anything else (a directory
    another user made in /tmp could otherwise receive our commands)."""
    if create:
        os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeRuntimeDir(f"{path}: not a directory")
    if info.st_uid != os.getuid():
        raise UnsafeRuntimeDir(f"{path}: owned by uid {info.st_uid}, not {os.getuid()}")
    if info.st_mode & 0o077:
        raise UnsafeRuntimeDir(f"{path}: mode {stat.S_IMODE(info.st_mode):o}, must be 700")
    return path


def runner_paths(env: dict[str, str]) -> tuple[str, str]:
    """(socket, pid file) of the warm runner for this environment's storeflow home."""
    key = _digest([("home", storeflow_home(env))])
    base = runtime_dir(env)
    return os.path.join(base, f"warm-{key}.sock"), os.path.join(base, f"warm-{key}.pid")


# -- fingerprint ----------------------------------------------------------------------------


def _digest(parts: list[tuple[str, str]]) -> str:
    # Two independent 32-bit checksums: enough to tell "changed" from "same" between
    # processes of one user, without hashlib (loading OpenSSL costs every command ~25 ms).
    data = json.dumps(sorted(parts)).encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _file_text(path: str) -> str:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO there would block the reader
            return ""
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


def settings_fingerprint(env: dict[str, str], cwd: str) -> str:
    """Everything Prefect and storeflow read their settings from before a fork: the
    PREFECT_*/STOREFLOW_* environment, Prefect's profiles file, and the settings files
    Prefect reads from the working directory (.env, prefect.toml); pyproject's
    [tool.prefect] is compared by the runner itself (pyproject_settings)."""
    parts = [("home", storeflow_home(env))]
    parts += [
        (f"env:{key}", value)
        for key, value in env.items()
        if (key.startswith(SETTING_PREFIXES) or key in SETTING_NAMES) and key != MODE_ENV
    ]
    prefect_home = env.get("PREFECT_HOME") or os.path.join(os.path.expanduser("~"), ".prefect")
    profiles = env.get("PREFECT_PROFILES_PATH") or os.path.join(prefect_home, "profiles.toml")
    parts.append(("profiles", _file_text(os.path.expanduser(profiles))))
    parts.append(("prefect.toml", _file_text(os.path.join(cwd, "prefect.toml"))))
    dotenv = _file_text(os.path.join(cwd, ".env"))
    parts.append((".env", "\n".join(ln for ln in dotenv.splitlines() if "PREFECT_" in ln)))
    return _digest(parts)


def pyproject_settings(cwd: str) -> str:
    """Prefect's settings in the working directory's pyproject.toml ([tool.prefect]), as
    a digest.  The runner reads this for each command's directory: reading TOML costs
    the `storeflow` process 3-6 ms (importing tomllib), the runner has it imported."""
    return _digest([("pyproject", _tool_prefect(os.path.join(cwd, "pyproject.toml")))])


def _tool_prefect(path: str) -> str:
    text = _file_text(path)
    if "prefect" not in text:
        return ""
    import tomllib  # only here: most directories have no such file

    try:
        section = tomllib.loads(text).get("tool", {}).get("prefect", {})
    except tomllib.TOMLDecodeError:
        return text  # Prefect would choke on it too: any change counts
    return json.dumps(section, sort_keys=True, default=str) if section else ""


def package_roots() -> list[str]:
    """Where storeflow's own packages are installed (one folder for each)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    folders = [os.path.join(root, name) for name in PACKAGES]
    return [folder for folder in folders if os.path.isdir(folder)]


def code_fingerprint(roots: list[str] | None = None) -> str:
    """The interpreter, the installed distributions (site-packages changes when one is
    added or removed) and every storeflow source file's size and mtime."""
    parts = [("python", f"{sys.executable} {sys.version}")]
    for entry in sys.path:
        if entry.endswith("-packages") and os.path.isdir(entry):
            parts.append((entry, str(os.stat(entry).st_mtime_ns)))
    for root in roots if roots is not None else package_roots():
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    info = os.stat(os.path.join(folder, name))
                    parts.append((os.path.join(folder, name), f"{info.st_size}:{info.st_mtime_ns}"))
    return _digest(parts)


# -- framing --------------------------------------------------------------------------------


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return _HEADER.pack(len(body)) + body


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = encode(message)
    if fds:
        sent = socket.send_fds(sock, [data], fds)
        data = data[sent:]
    if data:
        sock.sendall(data)


def nesting_depth(body: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, strings skipped."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def decode(body: bytes) -> dict[str, Any]:
    """One message's body, refused (WireError) when it is not a shallow JSON object."""
    if nesting_depth(body) > MAX_DEPTH:
        raise WireError(f"message nested deeper than {MAX_DEPTH} levels refused")
    try:
        message = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"not a JSON message: {exc}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message


class Reader:
    """Messages from one socket, in order; bytes past one message wait for the next.

    `receive()` blocks (within the socket's timeout) for a whole message; a server that
    serves many connections calls `pull()` when its selector says the socket is readable
    and `message()` to see whether that completed one, so no connection waits on another.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        #: Descriptors received so far (with the message being read); the caller owns them.
        self.fds: list[int] = []
        self.closed = False

    def pull(self, with_fds: int = 0) -> None:
        """Read what the socket has now (one recv); sets `closed` at the end of stream."""
        if with_fds and not self.fds:
            chunk, got, _flags, _addr = socket.recv_fds(self.sock, 65536, with_fds)
            self.fds.extend(got)
        else:
            chunk = self.sock.recv(65536)
        if not chunk:
            self.closed = True
        self.buffer += chunk
        _length(self.buffer)  # an oversized header is refused before its body arrives

    def message(self) -> dict[str, Any] | None:
        """The next whole message in the buffer, if there is one (WireError: a broken
        one, or the stream ended in the middle of one)."""
        if not self._complete():
            if self.closed and self.buffer:
                raise WireError("connection closed mid-message")
            return None
        end = _HEADER.size + _length(self.buffer)
        body, self.buffer = self.buffer[_HEADER.size : end], self.buffer[end:]
        return decode(body)

    def take_fds(self) -> list[int]:
        fds, self.fds = self.fds, []
        return fds

    def close_fds(self) -> None:
        for fd in self.take_fds():
            os.close(fd)

    def receive(self, with_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message (None at a clean end of stream) and any descriptors sent
        with it (at most `with_fds`; the caller owns and must close them)."""
        try:
            while (message := self.message()) is None and not self.closed:
                self.pull(with_fds)
        except Exception:
            self.close_fds()
            raise
        return message, self.take_fds()

    def _complete(self) -> bool:
        return len(self.buffer) >= _HEADER.size + _length(self.buffer)


def _length(buffer: bytes) -> int:
    if len(buffer) < _HEADER.size:
        return MAX_MESSAGE  # not even a header yet: incomplete
    (length,) = _HEADER.unpack_from(buffer)
    if length > MAX_MESSAGE:
        raise WireError(f"message of {length} bytes refused (at most {MAX_MESSAGE})")
    return int(length)
