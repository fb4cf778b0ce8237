"""A small binding of libnfs's synchronous API (the library behind libnfs-utils).

libnfs-utils ships only ``nfs-ls``, ``nfs-cp`` and ``nfs-cat``: no rename, unlink,
mkdir, utimes or chmod, ``nfs-ls`` shows no mtime (so ``age`` cannot be judged), and
``nfs-cp`` costs a process and a mount per file and creates files 0660 with a fresh
mtime.  The shared library they are built on (``libnfs.so.13``, a dependency of
libnfs-utils) has all of these, so the NFS handler calls it directly: one mount per
thread, no kernel mount, no root-only syscalls.

A context is not thread-safe; :class:`Mount` is used by one thread at a time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from functools import cache
from typing import Any, NamedTuple


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class NFSDirent(ctypes.Structure):
    pass


NFSDirent._fields_ = (
    ("next", ctypes.POINTER(NFSDirent)),
    ("name", ctypes.c_char_p),
    ("inode", ctypes.c_uint64),
    ("type", ctypes.c_uint32),
    ("mode", ctypes.c_uint32),
    ("size", ctypes.c_uint64),
    ("atime", _Timeval),
    ("mtime", _Timeval),
    ("ctime", _Timeval),
    ("uid", ctypes.c_uint32),
    ("gid", ctypes.c_uint32),
    ("nlink", ctypes.c_uint32),
    ("dev", ctypes.c_uint64),
    ("rdev", ctypes.c_uint64),
    ("blksize", ctypes.c_uint64),
    ("blocks", ctypes.c_uint64),
    ("used", ctypes.c_uint64),
    ("atime_nsec", ctypes.c_uint32),
    ("mtime_nsec", ctypes.c_uint32),
    ("ctime_nsec", ctypes.c_uint32),
)


class NFSStat64(ctypes.Structure):
    dev: int
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blksize: int
    blocks: int
    atime: int
    mtime: int
    ctime: int
    atime_nsec: int
    mtime_nsec: int
    ctime_nsec: int
    used: int
    _fields_ = tuple(
        (name, ctypes.c_uint64)
        for name in [
            "dev",
            "ino",
            "mode",
            "nlink",
            "uid",
            "gid",
            "rdev",
            "size",
            "blksize",
            "blocks",
            "atime",
            "mtime",
            "ctime",
            "atime_nsec",
            "mtime_nsec",
            "ctime_nsec",
            "used",
        ]
    )


class _URL(ctypes.Structure):
    _fields_ = (("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p))


_PATH_MAX = 4096


class NFSError(OSError):
    """A libnfs call failed; ``errno`` is set when libnfs returned -errno."""


@cache
def library() -> ctypes.CDLL:
    name = ctypes.util.find_library("nfs") or "libnfs.so.13"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise NFSError(
            f"cannot load libnfs ({name}): install the Debian package libnfs-utils"
        ) from exc
    vp, cp, i, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "nfs_init_context": (vp, []),
        "nfs_destroy_context": (None, [vp]),
        "nfs_get_error": (cp, [vp]),
        "nfs_parse_url_dir": (ctypes.POINTER(_URL), [vp, cp]),
        "nfs_destroy_url": (None, [ctypes.POINTER(_URL)]),
        "nfs_set_version": (i, [vp, i]),
        "nfs_set_uid": (None, [vp, i]),
        "nfs_set_gid": (None, [vp, i]),
        "nfs_set_timeout": (None, [vp, i]),
        "nfs_mount": (i, [vp, cp, cp]),
        "nfs_opendir": (i, [vp, cp, ctypes.POINTER(vp)]),
        "nfs_readdir": (ctypes.POINTER(NFSDirent), [vp, vp]),
        "nfs_closedir": (None, [vp, vp]),
        "nfs_lstat64": (i, [vp, cp, ctypes.POINTER(NFSStat64)]),
        "nfs_stat64": (i, [vp, cp, ctypes.POINTER(NFSStat64)]),
        "nfs_open": (i, [vp, cp, i, ctypes.POINTER(vp)]),
        "nfs_create": (i, [vp, cp, i, i, ctypes.POINTER(vp)]),
        "nfs_close": (i, [vp, vp]),
        "nfs_pread": (i, [vp, vp, u64, u64, vp]),
        "nfs_pwrite": (i, [vp, vp, u64, u64, vp]),
        "nfs_fsync": (i, [vp, vp]),
        "nfs_rename": (i, [vp, cp, cp]),
        "nfs_unlink": (i, [vp, cp]),
        "nfs_mkdir": (i, [vp, cp]),
        "nfs_utimes": (i, [vp, cp, ctypes.POINTER(_Timeval)]),
        "nfs_chmod": (i, [vp, cp, i]),
        "nfs_readlink": (i, [vp, cp, ctypes.c_char_p, i]),
        "nfs_get_readmax": (u64, [vp]),
        "nfs_get_writemax": (u64, [vp]),
    }
    for fname, (restype, argtypes) in signatures.items():
        func = getattr(lib, fname)
        func.restype = restype
        func.argtypes = argtypes
    return lib


def _b(path: str) -> bytes:
    return os.fsencode(path)


class Mount:
    """One libnfs context mounted on ``export`` of ``host`` (NFSv4, no portmapper)."""

    def __init__(
        self,
        host: str,
        export: str,
        *,
        port: int = 2049,
        uid: int | None = None,
        gid: int | None = None,
        timeout_ms: int = 30_000,
    ) -> None:
        self.lib = library()
        self.ctx = self.lib.nfs_init_context()
        if not self.ctx:
            raise NFSError("nfs_init_context failed")
        try:
            self._mount(host, export, port, uid, gid, timeout_ms)
        except BaseException:
            self.close()
            raise

    def _mount(
        self, host: str, export: str, port: int, uid: int | None, gid: int | None, timeout: int
    ) -> None:
        # The URL parser is the one public way to set the NFS port (?nfsport=) in 4.0.
        export = "/" + export.strip("/")
        url = self.lib.nfs_parse_url_dir(
            self.ctx, f"nfs://{host}{export}?version=4&nfsport={port}".encode()
        )
        if not url:
            raise NFSError(f"bad NFS address {host}:{port}{export}: {self.error()}")
        try:
            if uid is not None:
                self.lib.nfs_set_uid(self.ctx, uid)
            if gid is not None:
                self.lib.nfs_set_gid(self.ctx, gid)
            self.lib.nfs_set_timeout(self.ctx, timeout)
            self.check(
                self.lib.nfs_mount(self.ctx, url.contents.server, url.contents.path),
                f"mount nfs://{host}:{port}{export}",
            )
            self.readmax = int(self.lib.nfs_get_readmax(self.ctx)) or 1 << 20
            self.writemax = int(self.lib.nfs_get_writemax(self.ctx)) or 1 << 20
        finally:
            self.lib.nfs_destroy_url(url)

    def error(self) -> str:
        message = self.lib.nfs_get_error(self.ctx)
        return message.decode(errors="replace") if message else "unknown error"

    def check(self, rc: int, what: str) -> int:
        if rc < 0:
            raise NFSError(-rc, f"{what}: {self.error()}")
        return rc

    def close(self) -> None:
        if self.ctx:
            self.lib.nfs_destroy_context(self.ctx)
            self.ctx = None

    # -- operations (paths are relative to the export root, '/'-separated) ------------------

    def listdir(self, path: str) -> list[NFSDirentInfo]:
        handle = ctypes.c_void_p()
        self.check(
            self.lib.nfs_opendir(self.ctx, _b(path), ctypes.byref(handle)), f"opendir {path}"
        )
        out: list[NFSDirentInfo] = []
        try:
            while True:
                ent = self.lib.nfs_readdir(self.ctx, handle)
                if not ent:
                    return out
                d = ent.contents
                name = os.fsdecode(d.name)
                if name in (".", ".."):
                    continue
                out.append(
                    NFSDirentInfo(
                        name,
                        d.mode,
                        d.size,
                        d.atime.tv_sec * 1_000_000_000 + d.atime_nsec,
                        d.mtime.tv_sec * 1_000_000_000 + d.mtime_nsec,
                        d.ctime.tv_sec * 1_000_000_000 + d.ctime_nsec,
                        d.uid,
                        d.gid,
                    )
                )
        finally:
            self.lib.nfs_closedir(self.ctx, handle)

    def lstat(self, path: str, follow: bool = False) -> NFSStat64:
        st = NFSStat64()
        func = self.lib.nfs_stat64 if follow else self.lib.nfs_lstat64
        self.check(func(self.ctx, _b(path), ctypes.byref(st)), f"stat {path}")
        return st

    def readlink(self, path: str) -> str:
        # libnfs 4.0's NFSv4 readlink does not NUL-terminate the target it copies,
        # so bytes after it are whatever followed in its reply buffer (and it may
        # say "too small buffer" when they run long). Give it PATH_MAX and keep
        # exactly the link's length, which lstat reports.
        size = int(self.lstat(path).size)
        if not 0 < size <= _PATH_MAX:
            raise NFSError(errno.EINVAL, f"readlink {path}: implausible link length {size}")
        buffer = ctypes.create_string_buffer(_PATH_MAX + 1)
        self.check(self.lib.nfs_readlink(self.ctx, _b(path), buffer, _PATH_MAX), f"readlink {path}")
        return os.fsdecode(buffer.raw[:size])

    def open(self, path: str, write: bool = False, mode: int = 0o666) -> ctypes.c_void_p:
        handle = ctypes.c_void_p()
        if write:
            # libnfs 4.0 creates NFSv4 files GUARDED (EEXIST if present): then truncate.
            flags = os.O_WRONLY | os.O_TRUNC
            rc = self.lib.nfs_create(self.ctx, _b(path), flags, mode, ctypes.byref(handle))
            if rc == -errno.EEXIST:
                rc = self.lib.nfs_open(self.ctx, _b(path), flags, ctypes.byref(handle))
        else:
            rc = self.lib.nfs_open(self.ctx, _b(path), os.O_RDONLY, ctypes.byref(handle))
        self.check(rc, f"open {path}")
        return handle

    def close_file(self, handle: ctypes.c_void_p, sync: bool = False) -> None:
        if sync:
            self.check(self.lib.nfs_fsync(self.ctx, handle), "fsync")
        self.check(self.lib.nfs_close(self.ctx, handle), "close")

    # libnfs 4.0 (Debian 12's libnfs13) cannot encode an NFSv4 WRITE carrying more than
    # ~3.9 KB (its COMPOUND buffer is fixed; nfs-cp fails the same way on any larger
    # file).  A write is tried at the server's maximum once; when encoding fails, this
    # mount falls back to requests small enough for that buffer.  Reads are not affected.
    SMALL_WRITE = 3584

    def pread(self, handle: ctypes.c_void_p, offset: int, buffer: int, count: int) -> int:
        count = min(count, self.readmax)
        return self.check(self.lib.nfs_pread(self.ctx, handle, offset, count, buffer), "read")

    def pwrite(self, handle: ctypes.c_void_p, offset: int, buffer: int, count: int) -> int:
        done = 0
        while done < count:
            step = min(count - done, self.writemax)
            rc = self.lib.nfs_pwrite(self.ctx, handle, offset + done, step, buffer + done)
            if rc < 0 and step > self.SMALL_WRITE and "ZDR" in self.error():
                self.writemax = self.SMALL_WRITE
                continue
            wrote = self.check(rc, "write")
            if wrote == 0:
                break
            done += wrote
        return done

    def rename(self, source: str, target: str) -> None:
        self.check(self.lib.nfs_rename(self.ctx, _b(source), _b(target)), f"rename {source}")

    def unlink(self, path: str) -> None:
        self.check(self.lib.nfs_unlink(self.ctx, _b(path)), f"unlink {path}")

    def mkdir(self, path: str) -> None:
        self.check(self.lib.nfs_mkdir(self.ctx, _b(path)), f"mkdir {path}")

    def chmod(self, path: str, mode: int) -> None:
        self.check(self.lib.nfs_chmod(self.ctx, _b(path), mode), f"chmod {path}")

    def utimes(self, path: str, atime_ns: int, mtime_ns: int) -> None:
        times = (_Timeval * 2)(
            _Timeval(atime_ns // 1_000_000_000, atime_ns % 1_000_000_000 // 1000),
            _Timeval(mtime_ns // 1_000_000_000, mtime_ns % 1_000_000_000 // 1000),
        )
        self.check(self.lib.nfs_utimes(self.ctx, _b(path), times), f"utimes {path}")


class NFSDirentInfo(NamedTuple):
    name: str
    mode: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    uid: int
    gid: int
