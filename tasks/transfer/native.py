"""A native copy loop for many small local files, and its pure-Python twin.

Copying a 4 KiB file is a handful of system calls; in Python each one also pays for the
interpreter around it, and a thread pool adds the GIL hand-offs on top.  This module
compiles (once per machine and source version, with the system C compiler, into
``$XDG_CACHE_HOME/storeflow``) a loop that copies a whole batch of files in C: called
through ctypes, it runs without the GIL, so several threads copy in parallel on several
cores.  Where no compiler is found the same loop runs in Python, one thread at a time.

Each file is written as the engine asks: created (or truncated) at its temporary path,
content copied in the kernel (``copy_file_range``, falling back to read/write), mode set
when asked, atime and mtime set from the source's stat.  Nothing here renames into
place except :func:`rename_all`, which the engine's finalize step calls.  More loops:
:func:`tagged` tells which files of a chunk carry storeflow's metadata (extended
attributes) without the GIL, for the callbacks' rows; :func:`stat_names` stats a
listing's chunk; :func:`temp_names` makes a batch's temporary names.  Files are
named relative to their directories (one descriptor per directory and batch), so the
kernel does not walk a directory's path again for every file.

Threads share one destination directory, whose lock every create and rename takes:
on tmpfs that part does not run in parallel (bench/small_files.py prints this loop
alone at 1 and 2 threads beside the engine).
"""

from __future__ import annotations

import array
import ctypes
import errno
import hashlib
import logging
import os
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storeflow.tasks.fstools import copy_to_end

_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h> /* renameat */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { STEP_OPEN = 1, STEP_CREATE = 2, STEP_COPY = 3, STEP_MODE = 4, STEP_TIMES = 5,
       STEP_RENAME = 6 };

/* Copy in to out from the current offsets to the end.  expected: the size the caller
   saw when it listed the file (-1: unknown).  Asked for one byte more than that, a call
   that copies exactly expected bytes stopped at the end of the file: the call that
   would only return 0 to say so is saved.  A file that grew since gets the full count
   back and is copied on to its end; one that shrank gets fewer and goes on to the 0. */
static int copy_body(int in, int out, int64_t expected) {
    static const size_t most = (size_t)1 << 30;
    size_t want = expected >= 0 && (uint64_t)expected < most ? (size_t)expected + 1 : most;
    int first = 1, use_range = 1;
    char buffer[65536];
    for (;;) {
        if (use_range) {
            ssize_t got = copy_file_range(in, NULL, out, NULL, want, 0);
            if (got > 0) {
                if (first && got == expected && (size_t)got < want) return 0;
                first = 0;
                want = most;
                continue;
            }
            if (got == 0) return 0;
            if (errno == EINTR) continue;
            if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
                return -1;
            use_range = 0; /* nothing was copied yet by this call: fall back */
            continue;
        }
        size_t ask = want < sizeof buffer ? want : sizeof buffer;
        ssize_t got = read(in, buffer, ask);
        if (got == 0) return 0;
        if (got < 0) { if (errno == EINTR) continue; return -1; }
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(out, buffer + done, (size_t)(got - done));
            if (put < 0) { if (errno == EINTR) continue; return -1; }
            done += put;
        }
        if (first && got == expected && (size_t)got < ask) return 0;
        first = 0;
        want = most;
    }
}

/* Nanoseconds since the epoch, before 1970 too (tv_nsec must stay in 0..999999999). */
static struct timespec timespec_of(int64_t ns) {
    int64_t sec = ns / 1000000000, rest = ns % 1000000000;
    if (rest < 0) { rest += 1000000000; sec -= 1; }
    struct timespec ts = { (time_t)sec, (long)rest };
    return ts;
}

/* Copy n files; returns how many were done.  src and dst hold the paths one after
   another, each ended by a NUL (one string each: no array of pointers to build), relative
   to src_dir and dst_dir (directory descriptors, or AT_FDCWD), or absolute: a relative
   name skips the walk down the directory's path for every file.  On a failure, *step
   and *err say what failed for file number (return value); the partial temporary file
   stays for the caller to remove. */
int sf_copy_files(int n, int src_dir, const char *src, int dst_dir, const char *dst,
                  const int64_t *atime_ns, const int64_t *mtime_ns, const int32_t *mode,
                  const int64_t *size, int *step, int *err) {
    for (int i = 0; i < n; i++, src += strlen(src) + 1, dst += strlen(dst) + 1) {
        int in = openat(src_dir, src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0) { *step = STEP_OPEN; *err = errno; return i; }
        int out = openat(dst_dir, dst, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                         0666);
        if (out < 0) { *step = STEP_CREATE; *err = errno; close(in); return i; }
        int failed = 0;
        if (copy_body(in, out, size[i]) < 0) { failed = STEP_COPY; }
        else if (mode[i] >= 0 && fchmod(out, (mode_t)mode[i]) < 0) { failed = STEP_MODE; }
        else {
            struct timespec times[2] = { timespec_of(atime_ns[i]), timespec_of(mtime_ns[i]) };
            if (futimens(out, times) < 0) failed = STEP_TIMES;
        }
        int saved = errno;
        close(in);
        close(out);
        if (failed) { *step = failed; *err = saved; return i; }
    }
    return n;
}

/* Rename n temporary files into place, paths (given as sf_copy_files takes them)
   relative to dir (or AT_FDCWD).  A missing temporary file whose target exists was
   moved by an earlier attempt: skipped, so finalize can be repeated. */
int sf_rename_files(int n, int dir, const char *src, const char *dst, int *step, int *err) {
    struct stat st;
    for (int i = 0; i < n; i++, src += strlen(src) + 1, dst += strlen(dst) + 1) {
        if (renameat(dir, src, dir, dst) == 0) continue;
        int saved = errno;
        if (saved == ENOENT && fstatat(dir, src, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
            fstatat(dir, dst, &st, AT_SYMLINK_NOFOLLOW) == 0) continue;
        *step = STEP_RENAME; *err = saved; return i;
    }
    return n;
}

/* Stat n names relative to dir (not following links), given one after another, each
   ended by a NUL.  out gets 8 numbers a name: mode, uid, gid, size, atime, mtime and
   ctime in ns, and 0 or the errno of a stat that failed.  A listing's system calls for
   a whole chunk, without the GIL. */
void sf_stat_names(int dir, int n, const char *names, int64_t *out) {
    struct stat st;
    for (int i = 0; i < n; i++, out += 8) {
        if (fstatat(dir, names, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            memset(out, 0, 7 * sizeof *out);
            out[7] = errno;
        } else {
            out[0] = st.st_mode; out[1] = st.st_uid; out[2] = st.st_gid; out[3] = st.st_size;
            out[4] = (int64_t)st.st_atim.tv_sec * 1000000000 + st.st_atim.tv_nsec;
            out[5] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            out[6] = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
            out[7] = 0;
        }
        names += strlen(names) + 1;
    }
}

#ifndef SYS_listxattrat
#define SYS_listxattrat 465 /* Linux 6.13; the same number on x86_64 and arm64 */
#endif
static int no_listxattrat;

/* One listxattr of path, the file itself named relative to *dir, its directory kept
   open from the path before (a chunk's files share one): the kernel walks only the
   last name.  Where listxattrat is not in the kernel, listxattr of the whole path. */
static ssize_t list_names(const char *path, int *dir, char *dir_path, size_t dir_size,
                          char *names, size_t size) {
    const char *slash = strrchr(path, '/');
    if (!no_listxattrat && slash != NULL && slash != path &&
        (size_t)(slash - path) < dir_size) {
        size_t len = (size_t)(slash - path);
        if (*dir < 0 || strncmp(dir_path, path, len) != 0 || dir_path[len] != '\0') {
            if (*dir >= 0) close(*dir);
            memcpy(dir_path, path, len);
            dir_path[len] = '\0';
            *dir = open(dir_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        }
        if (*dir >= 0) {
            ssize_t got = syscall(SYS_listxattrat, *dir, slash + 1, 0, names, size);
            if (got >= 0 || errno != ENOSYS) return got;
            no_listxattrat = 1;
        }
    }
    return listxattr(path, names, size);
}

/* For each of n paths, given one after another, each ended by a NUL: 1 when it
   carries an extended attribute whose name starts with prefix (or may: a list too long
   for the buffer), 0 when none does, -1 when its attributes cannot be listed (no file,
   no support).  The one system call a file without storeflow metadata needs, for a
   whole chunk without the GIL. */
void sf_tagged(int n, const char *paths, const char *prefix, int *found) {
    char names[4096], dir_path[4096];
    int dir = -1;
    size_t plen = strlen(prefix);
    for (int i = 0; i < n; i++, paths += strlen(paths) + 1) {
        ssize_t got = list_names(paths, &dir, dir_path, sizeof dir_path, names, sizeof names);
        if (got < 0) { found[i] = errno == ERANGE ? 1 : -1; continue; }
        int hit = 0;
        for (ssize_t at = 0; at < got && !hit; at += (ssize_t)strlen(names + at) + 1)
            hit = strncmp(names + at, prefix, plen) == 0;
        found[i] = hit;
    }
    if (dir >= 0) close(dir);
}

/* SHA-1 (FIPS 180-4) of len bytes at msg: the digest the temporary names are made of
   (names.temp_name), here so that a batch's names cost no Python call per file. */
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (int t = 16; t < 80; t++) w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], next;
#define SF_ROUND(f, k) \
    (next = rol(a, 5) + (f) + e + (k) + w[t], e = d, d = c, c = rol(b, 30), b = a, a = next)
    int t = 0;
    for (; t < 20; t++) SF_ROUND((b & c) | (~b & d), 0x5A827999u);
    for (; t < 40; t++) SF_ROUND(b ^ c ^ d, 0x6ED9EBA1u);
    for (; t < 60; t++) SF_ROUND((b & c) | (b & d) | (c & d), 0x8F1BBCDCu);
    for (; t < 80; t++) SF_ROUND(b ^ c ^ d, 0xCA62C1D6u);
#undef SF_ROUND
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = { 0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u };
    unsigned char last[64];
    size_t whole = len - len % 64;
    for (size_t at = 0; at < whole; at += 64) sha1_block(h, msg + at);
    size_t rest = len - whole;
    memset(last, 0, sizeof last);
    memcpy(last, msg + whole, rest);
    last[rest] = 0x80;
    if (rest >= 56) { sha1_block(h, last); memset(last, 0, sizeof last); }
    uint64_t bits = (uint64_t)len * 8;
    for (int j = 0; j < 8; j++) last[63 - j] = (unsigned char)(bits >> (8 * j));
    sha1_block(h, last);
    for (int j = 0; j < 20; j++) out[j] = (unsigned char)(h[j / 4] >> (24 - 8 * (j % 4)));
}

/* The temporary name of each of n final names (given one after another, each ended by
   a NUL): prefix, the first hex (at most 40) hex digits of the name's SHA-1, suffix;
   written one after another into out, all of the same length, no NUL between. */
void sf_temp_names(int n, const char *finals, const char *prefix, const char *suffix,
                   int hex, char *out) {
    static const char digits[] = "0123456789abcdef";
    size_t plen = strlen(prefix), slen = strlen(suffix);
    unsigned char digest[20];
    for (int i = 0; i < n; i++) {
        size_t len = strlen(finals);
        sha1((const unsigned char *)finals, len, digest);
        finals += len + 1;
        memcpy(out, prefix, plen);
        out += plen;
        for (int j = 0; j < hex; j++) *out++ = digits[(digest[j / 2] >> (j % 2 ? 0 : 4)) & 15];
        memcpy(out, suffix, slen);
        out += slen;
    }
}

/* A chunk's stat or probe on a thread of its own, started by sf_start_* and joined by
   sf_finish: the caller, which holds the GIL, works on the chunk before meanwhile and
   no Python thread waits for the GIL to hand the result over.  NULL: it ran here
   already (no memory or no thread to be had), nothing to join. */
typedef struct {
    pthread_t thread;
    int kind, dir, n;
    const char *names, *prefix;
    int64_t *stats;
    int *found;
} job_t;

static void *run_job(void *arg) {
    job_t *job = arg;
    if (job->kind == 0) sf_stat_names(job->dir, job->n, job->names, job->stats);
    else sf_tagged(job->n, job->names, job->prefix, job->found);
    return NULL;
}

static void *start_job(job_t given) {
    job_t *job = malloc(sizeof *job);
    if (job != NULL) {
        *job = given;
        if (pthread_create(&job->thread, NULL, run_job, job) == 0) return job;
        free(job);
    }
    run_job(&given);
    return NULL;
}

void *sf_start_stat_names(int dir, int n, const char *names, int64_t *out) {
    job_t job = { .kind = 0, .dir = dir, .n = n, .names = names, .stats = out };
    return start_job(job);
}

void *sf_start_tagged(int n, const char *paths, const char *prefix, int *found) {
    job_t job = { .kind = 1, .n = n, .names = paths, .prefix = prefix, .found = found };
    return start_job(job);
}

void sf_finish(void *started) {
    if (started == NULL) return;
    job_t *job = started;
    pthread_join(job->thread, NULL);
    free(job);
}
"""

LOG = logging.getLogger(__name__)

#: How the loop is compiled (part of the cached library's name, as its source is).
_CFLAGS = ("-O2", "-shared", "-fPIC", "-pthread")

# Linux's AT_FDCWD: *at() calls then resolve relative paths as the plain calls do.
_AT_FDCWD = -100

STEPS = {1: "open", 2: "create", 3: "copy to", 4: "chmod", 5: "set times of", 6: "rename"}

_Int64s = ctypes.POINTER(ctypes.c_int64)
_Int32s = ctypes.POINTER(ctypes.c_int32)
_Int = ctypes.POINTER(ctypes.c_int)


@dataclass(frozen=True)
class CopyFailed(Exception):
    """File ``index`` of a batch failed at ``step`` (a key of STEPS) with ``errno``."""

    index: int
    step: int
    errno: int

    @property
    def operation(self) -> str:
        return STEPS.get(self.step, "copy")

    @property
    def reason(self) -> str:
        return os.strerror(self.errno)


@dataclass
class Batch:
    """Files to copy, as columns (one list per field: no object per file)."""

    #: Paths as str or bytes (str: encoded as os.fsencode does, once for the batch).
    sources: Sequence[str | bytes]
    targets: Sequence[str | bytes]
    atimes_ns: list[int]
    mtimes_ns: list[int]
    #: -1: leave the mode as created (umask applies).
    modes: list[int]
    #: The directories relative sources and targets are in (None: the working
    #: directory); an absolute path ignores them.
    source_dir: bytes | None = None
    target_dir: bytes | None = None
    #: Each file's size when it was listed (None: not known): a file found to end
    #: there is not asked once more for the end (see copy_body); one that grew or
    #: shrank since is copied to its end all the same.
    sizes: list[int] | None = None

    def __len__(self) -> int:
        return len(self.sources)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "storeflow"


class _Library:
    """The compiled loop, loaded on first use; None when it cannot be built here."""

    _lock = threading.Lock()
    _loaded: ctypes.CDLL | None = None
    _tried = False

    @classmethod
    def get(cls) -> ctypes.CDLL | None:
        if cls._tried:
            return cls._loaded
        with cls._lock:
            if not cls._tried:
                cls._loaded = cls._build()
                cls._tried = True
        return cls._loaded

    @classmethod
    def _build(cls) -> ctypes.CDLL | None:
        if os.environ.get("STOREFLOW_NATIVE_COPY", "on") == "off":
            return None
        digest = hashlib.sha256(" ".join([_SOURCE, *_CFLAGS]).encode()).hexdigest()[:16]
        directory = _cache_dir()
        library = directory / f"copyloop-{digest}.so"
        try:
            if not library.exists():
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=directory) as scratch:
                    source = Path(scratch) / "copyloop.c"
                    source.write_text(_SOURCE)
                    built = Path(scratch) / "copyloop.so"
                    subprocess.run(
                        ["cc", *_CFLAGS, "-o", str(built), str(source)],
                        check=True,
                        capture_output=True,
                        timeout=120,
                    )
                    # Atomic: a concurrent build by another process replaces it whole.
                    os.replace(built, library)
            loaded = ctypes.CDLL(str(library))
        except (OSError, subprocess.SubprocessError) as exc:
            # Said once a process: small files then copy several times slower.
            LOG.warning(
                "native copy loop not built (%s): small local files are copied in Python",
                _why(exc),
            )
            return None
        loaded.sf_copy_files.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            _Int64s,
            _Int64s,
            _Int32s,
            _Int64s,
            _Int,
            _Int,
        ]
        loaded.sf_copy_files.restype = ctypes.c_int
        loaded.sf_rename_files.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_char_p,
            _Int,
            _Int,
        ]
        loaded.sf_rename_files.restype = ctypes.c_int
        loaded.sf_tagged.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, _Int]
        loaded.sf_tagged.restype = None
        loaded.sf_temp_names.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
        ]
        loaded.sf_temp_names.restype = None
        loaded.sf_stat_names.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, _Int64s]
        loaded.sf_stat_names.restype = None
        loaded.sf_start_tagged.argtypes = loaded.sf_tagged.argtypes
        loaded.sf_start_tagged.restype = ctypes.c_void_p
        loaded.sf_start_stat_names.argtypes = loaded.sf_stat_names.argtypes
        loaded.sf_start_stat_names.restype = ctypes.c_void_p
        loaded.sf_finish.argtypes = [ctypes.c_void_p]
        loaded.sf_finish.restype = None
        return loaded


def _why(exc: OSError | subprocess.SubprocessError) -> str:
    """What stopped the build, in a line: the compiler's first error, or the OS error."""
    if isinstance(exc, subprocess.CalledProcessError):
        errors = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        first = next((line for line in errors.splitlines() if "error" in line), "")
        return f"cc exited {exc.returncode}: {first.strip()}" if first else str(exc)
    return str(exc)


def available() -> bool:
    """True when the native loop is compiled and loaded (else the Python loop runs)."""
    return _Library.get() is not None


def _open_dir(path: bytes | None, step: int) -> int:
    """A descriptor of ``path`` for the *at() calls (AT_FDCWD for None); a directory
    that cannot be opened fails the batch's first file at ``step``."""
    if path is None:
        return _AT_FDCWD
    try:
        return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CopyFailed(0, step, exc.errno or errno.EIO) from None


def _close_dir(fd: int) -> None:
    if fd != _AT_FDCWD:
        os.close(fd)


def _open_dirs(batch: Batch) -> tuple[int, int]:
    src_dir = _open_dir(batch.source_dir, 1)
    try:
        return src_dir, _open_dir(batch.target_dir, 2)
    except CopyFailed:
        _close_dir(src_dir)
        raise


def _joined(paths: Sequence[str | bytes]) -> bytes:
    """``paths`` as the C loops take a list of them: one after another, each ended
    by a NUL (a join costs a 10,000-file batch 0.1 ms, an array of pointers 5 ms).
    Names given as str are encoded once for the lot, not one by one."""
    try:
        joined = b"\0".join(paths) + b"\0"  # type: ignore[arg-type]
    except TypeError:
        try:
            joined = os.fsencode("\0".join(paths) + "\0")  # type: ignore[arg-type]
        except TypeError:  # str and bytes mixed
            joined = b"".join(os.fsencode(p) + b"\0" for p in paths)
    if joined.count(0) != len(paths):
        raise ValueError("a path given to the native loop holds a NUL byte")
    return joined


def _column(code: str, values: Sequence[int]) -> ctypes.Array[Any]:
    """``values`` as a C array (``code``: array's "q" for int64, "i" for int32), built
    through array.array: ten times faster than filling a ctypes array by its items."""
    column = array.array(code, values)
    kind = ctypes.c_int64 if code == "q" else ctypes.c_int32
    return (kind * len(column)).from_buffer(column)


def copy_all(batch: Batch) -> None:
    """Copy every file of ``batch`` in order; raise :class:`CopyFailed` at the first
    failure.  The native loop runs without the GIL."""
    library = _Library.get()
    if library is None:
        _copy_in_python(batch)
        return
    n = len(batch)
    if n == 0:
        return
    sources, targets = _joined(batch.sources), _joined(batch.targets)
    atimes, mtimes = _column("q", batch.atimes_ns), _column("q", batch.mtimes_ns)
    modes = _column("i", batch.modes)
    sizes = _column("q", batch.sizes if batch.sizes is not None else [-1] * n)
    step, err = ctypes.c_int(0), ctypes.c_int(0)
    src_dir, dst_dir = _open_dirs(batch)
    try:
        done = library.sf_copy_files(
            n,
            src_dir,
            sources,
            dst_dir,
            targets,
            atimes,
            mtimes,
            modes,
            sizes,
            ctypes.byref(step),
            ctypes.byref(err),
        )
    finally:
        _close_dir(src_dir)
        _close_dir(dst_dir)
    if done != n:
        raise CopyFailed(done, step.value, err.value)


def rename_all(
    pairs: Sequence[tuple[str | bytes, str | bytes]], directory: bytes | None = None
) -> None:
    """Rename each (temporary, final) pair, skipping those an earlier attempt moved;
    relative paths are in ``directory`` (None: the working directory)."""
    library = _Library.get()
    if library is None:
        _rename_in_python(pairs, directory)
        return
    n = len(pairs)
    if n == 0:
        return
    sources, targets = _joined([p[0] for p in pairs]), _joined([p[1] for p in pairs])
    step, err = ctypes.c_int(0), ctypes.c_int(0)
    dir_fd = _open_dir(directory, 6)
    try:
        done = library.sf_rename_files(
            n, dir_fd, sources, targets, ctypes.byref(step), ctypes.byref(err)
        )
    finally:
        _close_dir(dir_fd)
    if done != n:
        raise CopyFailed(done, step.value, err.value)


def temp_names(
    finals: Sequence[str], prefix: bytes, hex_digits: int, suffix: bytes
) -> list[bytes] | None:
    """``prefix`` + the first ``hex_digits`` hex digits of each name's SHA-1 (of its
    UTF-8 bytes, surrogates escaped) + ``suffix``, in one call: a Python hash object
    per name costs a 10,000-file batch about 10 ms, twice (delivery and finalize).
    None when the native loop is not here, or a name holds a NUL (not a file name)."""
    library = _Library.get()
    if library is None or not 0 <= hex_digits <= 40:
        return None
    n = len(finals)
    joined = "\0".join(finals).encode("utf-8", "surrogateescape") + b"\0"
    if joined.count(0) != n:
        return None
    width = len(prefix) + hex_digits + len(suffix)
    out = ctypes.create_string_buffer(width * n)
    library.sf_temp_names(n, joined, prefix, suffix, hex_digits, out)
    raw = out.raw
    return [raw[at : at + width] for at in range(0, width * n, width)]


class Job:
    """A native loop over a chunk (``sf_<loop>``), run ahead on a thread of its own (a C
    thread: no Python thread waits for the GIL to hand its answer over) while the caller
    works on something else; :meth:`result` waits for it (without the GIL) and gives its
    numbers.  Not ``ahead``, it runs at once, here.  The buffers it reads and fills are
    kept here until it has ended: one dropped unasked is waited for before they go."""

    __slots__ = ("_args", "_handle", "_library", "_out")

    def __init__(
        self,
        library: ctypes.CDLL,
        loop: str,
        args: tuple[object, ...],
        out: ctypes.Array[Any],
        ahead: bool,
    ) -> None:
        self._library = library
        self._args = args  # the names and the prefix, read by the C thread
        self._out = out
        self._handle: int | None = None  # set only once the thread runs
        if ahead:
            self._handle = getattr(library, f"sf_start_{loop}")(*args, out)
        else:
            getattr(library, f"sf_{loop}")(*args, out)

    def wait(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._library.sf_finish(handle)

    def result(self) -> list[int]:
        self.wait()
        return memoryview(self._out).cast("B").cast(self._out._type_._type_).tolist()

    def __del__(self) -> None:
        self.wait()


class Done:
    """:class:`Job`'s stand-in for an empty chunk: nothing to run."""

    def result(self) -> list[int]:
        return []

    def wait(self) -> None:
        pass


def tagged_job(paths: Sequence[str], prefix: bytes, ahead: bool) -> Job | Done | None:
    """:func:`tagged` as a job: run ahead on a thread of its own, or at once (see
    :class:`Job`); its ``result()`` is the list :func:`tagged` gives.  None when the
    native loop is not here."""
    library = _Library.get()
    if library is None:
        return None
    n = len(paths)
    if n == 0:
        return Done()
    found = (ctypes.c_int * n)()
    return Job(library, "tagged", (n, _joined(paths), prefix), found, ahead)


def tagged(paths: Sequence[str], prefix: bytes) -> list[int] | None:
    """For each path, 1 when it carries an extended attribute whose name starts with
    ``prefix`` (or may), 0 when it carries none, -1 when its attributes cannot be
    listed; None when the native loop is not here.  The whole list is read without the
    GIL, each file named relative to its directory where the kernel has listxattrat."""
    done = tagged_job(paths, prefix, ahead=False)
    return done.result() if done is not None else None


#: Numbers :func:`stat_names` gives per name.
STAT_FIELDS = 8


def stat_names_job(dir_fd: int, names: Sequence[str], ahead: bool) -> Job | Done | None:
    """:func:`stat_names` as a job: run ahead on a thread of its own, or at once (see
    :class:`Job`); its ``result()`` is the list :func:`stat_names` gives.  None when
    the native loop is not here.  Run ahead, ``dir_fd`` must stay open until it has
    ended."""
    library = _Library.get()
    if library is None:
        return None
    n = len(names)
    if n == 0:
        return Done()
    out = (ctypes.c_int64 * (n * STAT_FIELDS))()
    return Job(library, "stat_names", (dir_fd, n, _joined(names)), out, ahead)


def stat_names(dir_fd: int, names: Sequence[str]) -> list[int] | None:
    """lstat of each of ``names`` (relative to the directory ``dir_fd``), in one call
    without the GIL: :data:`STAT_FIELDS` numbers a name, mode, uid, gid, size, atime,
    mtime, ctime (ns) and 0 or the errno of its failure; None when the native loop is
    not here.  A listing's stat calls cost a third less than os.stat's, and the GIL is
    let go once a chunk instead of once a file (other threads' work does not wait)."""
    done = stat_names_job(dir_fd, names, ahead=False)
    return done.result() if done is not None else None


_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def _copy_in_python(batch: Batch) -> None:
    src_dir, dst_dir = _open_dirs(batch)
    try:
        failed = _copy_rows_in_python(batch, _dir_fd(src_dir), _dir_fd(dst_dir))
    finally:
        _close_dir(src_dir)
        _close_dir(dst_dir)
    if failed is not None:
        raise failed


def _dir_fd(fd: int) -> int | None:
    """os.open's dir_fd for an *at() descriptor (None for the working directory)."""
    return None if fd == _AT_FDCWD else fd


def _copy_rows_in_python(
    batch: Batch, src_dir: int | None, dst_dir: int | None
) -> CopyFailed | None:
    """Copy the rows in order; the first failure is returned, not raised."""
    sizes = batch.sizes if batch.sizes is not None else [-1] * len(batch)
    rows = zip(
        batch.sources,
        batch.targets,
        batch.atimes_ns,
        batch.mtimes_ns,
        batch.modes,
        sizes,
        strict=True,
    )
    for index, (source, target, atime, mtime, mode, size) in enumerate(rows):
        step = 1
        try:
            src = os.open(source, _READ, dir_fd=src_dir)
            try:
                step = 2
                dst = os.open(target, _WRITE, 0o666, dir_fd=dst_dir)
                try:
                    step = 3
                    copy_to_end(src, dst, size)
                    if mode >= 0:
                        step = 4
                        os.fchmod(dst, mode)
                    step = 5
                    os.utime(dst, ns=(atime, mtime))
                finally:
                    os.close(dst)
            finally:
                os.close(src)
        except OSError as exc:
            return CopyFailed(index, step, exc.errno or errno.EIO)
    return None


def _rename_in_python(
    pairs: Sequence[tuple[str | bytes, str | bytes]], directory: bytes | None
) -> None:
    fd = _open_dir(directory, 6)
    try:
        failed = _rename_rows_in_python(pairs, _dir_fd(fd))
    finally:
        _close_dir(fd)
    if failed is not None:
        raise failed


def _rename_rows_in_python(
    pairs: Sequence[tuple[str | bytes, str | bytes]], at: int | None
) -> CopyFailed | None:
    for index, (temp_name, final_name) in enumerate(pairs):
        temp, final = os.fsencode(temp_name), os.fsencode(final_name)  # os.replace: one type
        try:
            os.replace(temp, final, src_dir_fd=at, dst_dir_fd=at)
        except OSError as exc:
            if exc.errno == errno.ENOENT and not _lexists(temp, at) and _lexists(final, at):
                continue
            return CopyFailed(index, 6, exc.errno or errno.EIO)
    return None


def _lexists(path: bytes, dir_fd: int | None) -> bool:
    try:
        os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True
