"""The one way storeflow edits a server's configuration files.

An edit takes an exclusive lock, reads each file it will change (keeping the
original bytes), writes new contents atomically (temp file, fsync, rename,
fsync the directory) and can put every original back byte for byte. The lock
is held until the edit is finished or restored, so two runs never interleave
their read-modify-write and an undo never wipes another run's later edit; the
kernel frees it if the process dies, so a killed run cannot wedge anything.
"""

import contextlib
import fcntl
import os
import secrets
from pathlib import Path

TEMP_MARK = ".storeflow-tmp-"


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never half."""
    temp = path.with_name(f".{path.name}{TEMP_MARK}{secrets.token_hex(6)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)  # O_CREAT's mode is filtered by the umask
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def leftover_temp_files(path: Path) -> list[Path]:
    """Temp files of `path` left by a process killed inside atomic_write."""
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}{TEMP_MARK}*"))


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


class ConfigEdit:
    """Changes to a set of configuration files that can be undone byte for byte."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self._fd: int | None = None
        self._originals: dict[Path, bytes | None] = {}  # None: the file did not exist
        self._written: list[Path] = []

    def acquire(self) -> "ConfigEdit":
        if self._fd is None:
            self.lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor frees the flock
            self._fd = None

    def __enter__(self) -> "ConfigEdit":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def changed(self) -> list[Path]:
        return list(self._written)

    def read(self, path: Path) -> str:
        """The file's text ('' if it does not exist); the first read is what restore puts back."""
        self._require_lock()
        try:
            data: bytes | None = path.read_bytes()
        except FileNotFoundError:
            data = None
        self._originals.setdefault(path, data)
        return (data or b"").decode("utf-8")

    def write(self, path: Path, text: str) -> None:
        self._require_lock()
        if path not in self._originals:
            self.read(path)
        original = self._originals[path]
        if original is not None and original == text.encode("utf-8"):
            return
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
        atomic_write(path, text.encode("utf-8"), mode)
        if path not in self._written:
            self._written.append(path)

    def restore(self) -> list[Path]:
        """Put back every file this edit wrote, byte for byte; returns those restored."""
        self._require_lock()
        restored = []
        for path in reversed(self._written):
            original = self._originals[path]
            if original is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
                atomic_write(path, original, mode)
            restored.append(path)
        self._written.clear()
        return restored

    def _require_lock(self) -> None:
        if self._fd is None:
            raise RuntimeError(f"edit of configuration files without holding {self.lock}")
