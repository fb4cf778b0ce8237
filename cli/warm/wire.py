"""What the warm runner and its clients share: where the socket lives, how messages are
framed, and the fingerprint that says whether a runner can serve a command.

Standard library only (the client imports this before anything else).
"""

import json
import os
import socket
import stat
import struct
import sys
import zlib
from typing import Any

#: STOREFLOW_WARM: "auto" (use a running warm runner when it fits, else run here),
#: "off" (always run here), "require" (fail when no warm runner can take the command).
MODE_ENV = "STOREFLOW_WARM"
MODES = ("auto", "off", "require")
PROTOCOL = 1
#: A request carries the whole environment; anything near this is not a request.
MAX_MESSAGE = 4 << 20
_HEADER = struct.Struct("!I")

#: Packages whose code a warm runner has loaded: a change to any of them makes it stale.
PACKAGES = ("flows", "tasks", "blocks", "sandbox", "models")
#: Environment that shapes what was imported or configured before the fork.
SETTING_PREFIXES = ("PREFECT_", "STOREFLOW_")
SETTING_NAMES = ("PYTHONPATH", "PYTHONHOME", "DO_NOT_TRACK")


class WireError(Exception):
    """The peer broke the protocol or went away mid-message."""


class UnsafeRuntimeDir(Exception):
    """The directory for the socket is not this user's private directory."""


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
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return ""


def settings_fingerprint(env: dict[str, str], cwd: str) -> str:
    """Everything Prefect and storeflow read their settings from before a fork: the
    PREFECT_*/STOREFLOW_* environment, Prefect's profiles file, and the settings files
    Prefect reads from the working directory (.env, prefect.toml, pyproject's
    [tool.prefect])."""
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
    parts.append(("pyproject", _tool_prefect(os.path.join(cwd, "pyproject.toml"))))
    return _digest(parts)


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


class Reader:
    """Messages from one socket, in order; bytes past one message wait for the next."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def receive(self, with_fds: int = 0) -> tuple[dict[str, Any] | None, list[int]]:
        """The next message (None at a clean end of stream) and any descriptors sent
        with it (at most `with_fds`; the caller owns and must close them)."""
        fds: list[int] = []
        try:
            while not self._complete():
                if with_fds and not fds:
                    chunk, got, _flags, _addr = socket.recv_fds(self.sock, 65536, with_fds)
                    fds.extend(got)
                else:
                    chunk = self.sock.recv(65536)
                if not chunk:
                    if self.buffer:
                        raise WireError("connection closed mid-message")
                    return None, fds
                self.buffer += chunk
            end = _HEADER.size + _length(self.buffer)
            body, self.buffer = self.buffer[_HEADER.size : end], self.buffer[end:]
            message = json.loads(body)
            if not isinstance(message, dict):
                raise WireError("a message must be a JSON object")
        except Exception:
            for fd in fds:
                os.close(fd)
            raise
        return message, fds

    def _complete(self) -> bool:
        return len(self.buffer) >= _HEADER.size + _length(self.buffer)


def _length(buffer: bytes) -> int:
    if len(buffer) < _HEADER.size:
        return MAX_MESSAGE  # not even a header yet: incomplete
    (length,) = _HEADER.unpack_from(buffer)
    if length > MAX_MESSAGE:
        raise WireError(f"message of {length} bytes refused (at most {MAX_MESSAGE})")
    return int(length)
