"""Filesystem work for spaces, templates and snapshots, done safely.

Rules kept everywhere here: never follow a symlink out of a tree, never act
on a path that resolves outside the directory it must stay in, and build
new trees under a temporary name so a half-made tree never shows under its
final name.
"""

import errno
import fcntl
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from storeflow.models.errors import InvalidInput, Refused

FICLONE = 0x40049409  # linux/fs.h: share the source file's extents (a reflink)
READ_ONLY_DIR = 0o555


class CopyNotAllowed(Refused):
    """A copy that would leave or recurse into storeflow's own trees."""


class MoveNotAllowed(Refused):
    """A move that would leave the store it must stay in."""


class UninstallNotAllowed(Refused):
    """The installed template was changed in the space: it holds user data."""


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int


def is_inside(base: Path, path: Path) -> bool:
    """True if `path`, with every symlink resolved, is `base` or below it."""
    base_real = base.resolve()
    real = path.resolve()
    return real == base_real or base_real in real.parents


def child_path(base: Path, name: str, what: str) -> Path:
    """`base/name`, refusing a symlink or anything that resolves outside `base`."""
    path = base / name
    if path.is_symlink():
        raise MoveNotAllowed(f"{what} {path} is a symbolic link; refusing to touch it")
    if path.parent.resolve() != base.resolve() or not is_inside(base, path):
        raise MoveNotAllowed(f"{what} {path} resolves outside {base}")
    return path


def temp_sibling(path: Path, purpose: str) -> Path:
    """A hidden, unique name next to `path`, for building a tree before renaming it."""
    return path.with_name(f".{path.name}.{purpose}-{uuid.uuid4().hex[:12]}")


def walk(root: Path) -> Iterator[os.DirEntry[str]]:
    """Every entry below `root`, never following symlinks."""
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                yield entry
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)


def usage(root: Path) -> Usage:
    """Bytes and files below `root`, each inode counted once (hard links)."""
    seen: set[tuple[int, int]] = set()
    total = files = 0
    for entry in walk(root):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_size
        files += 1
    return Usage(bytes=total, files=files)


def is_empty(root: Path) -> bool:
    with os.scandir(root) as entries:
        return next(entries, None) is None


def check_source_dir(source: Path, field: str, forbidden: list[Path]) -> None:
    """A user directory we may copy from: exists, is a directory, holds none of ours."""
    if not source.is_absolute():
        raise InvalidInput(field, "must be an absolute path")
    if source.is_symlink() or not source.is_dir():
        raise InvalidInput(field, f"{source} is not a directory (symbolic links are not followed)")
    for tree in forbidden:
        if is_inside(tree, source) or is_inside(source, tree):
            raise CopyNotAllowed(f"{field}: {source} overlaps storeflow's own tree {tree}")


def copy_tree(source: Path, dest: Path) -> None:
    """Copy `source` to the new path `dest`: modes, times and symlinks kept as they are.

    Built under a temporary sibling name and renamed into place, so `dest`
    either does not exist or is complete.
    """
    staging = temp_sibling(dest, "copy")
    try:
        staging.mkdir()
        install_tree(source, staging)
        shutil.copystat(source, staging, follow_symlinks=False)
        os.rename(staging, dest)
    except BaseException:
        remove_tree(staging)
        raise


def copy_entries(source: Path, dest: Path, rels: list[str], skip_existing: bool = False) -> None:
    """Copy the entries `rels` of `source` into `dest`: modes, times and extended
    attributes kept (what `cp -a` keeps), symlinks copied as links, never followed.
    A file already at `dest` is refused (never written through), or kept with
    `skip_existing`."""
    directories: list[tuple[str, os.stat_result]] = []
    for rel in sorted(rels):  # parents before children
        src, target = os.path.join(source, rel), os.path.join(dest, rel)
        st = os.lstat(src)
        if skip_existing and os.path.lexists(target):
            if stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(os.lstat(target).st_mode):
                directories.append((target, st))  # its entries may change: times last
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), target)
            # Its time too, as `cp -a` keeps it: an uninstall compares times.
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
        elif stat.S_ISDIR(st.st_mode):
            os.mkdir(target)
            directories.append((target, st))
        else:
            copy_file(src, target, st)
    # Directory times change as entries land in them: set them last, deepest first.
    for target, st in reversed(directories):
        os.chmod(target, stat.S_IMODE(st.st_mode))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_file(source: str, dest: str, st: os.stat_result) -> None:
    """A regular file's bytes (in the kernel where it can), mode, times and
    extended attributes, into the new file `dest`: what `shutil.copy2` keeps, in a
    third of its system calls.  Anything but a regular file (a fifo, a device) is
    refused, and opening never waits (a fifo put there since would)."""
    if not stat.S_ISREG(st.st_mode):
        raise CopyNotAllowed(f"{source} is not a file, directory or symbolic link")
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        dst = os.open(dest, flags, 0o600)
        try:
            copy_to_end(src, dst, st.st_size)
            _copy_xattrs(src, dst)
            os.fchmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(dst)
    finally:
        os.close(src)


def copy_to_end(
    src: int,
    dst: int,
    expected: int = -1,
    on_bytes: Callable[[int], object] | None = None,
    step: int = 1 << 30,
) -> None:
    """Copy ``src`` to ``dst`` from their offsets to the end of ``src``, in the kernel
    where it can (the transfer engine's C copy_body does the same, tasks/transfer/
    native.py), else by reading and writing.  ``expected``, the size the caller saw,
    saves the call that only finds the end; a file that grew or shrank is copied to its
    end all the same.  ``on_bytes`` is told what each call copied, at most ``step``
    bytes (a progress meter's grain)."""
    want = expected + 1 if 0 <= expected < step else step
    try:
        got = os.copy_file_range(src, dst, want)
        if on_bytes is not None and got:
            on_bytes(got)
        if got == expected and got < want:
            return
        while got:
            got = os.copy_file_range(src, dst, step)
            if on_bytes is not None and got:
                on_bytes(got)
        return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # No in-kernel copy between these filesystems: the offsets moved with what was
    # copied, so reading and writing goes on from there.
    while chunk := os.read(src, min(step, 1 << 20)):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view) :]
        if on_bytes is not None:
            on_bytes(len(chunk))


# What shutil.copy2 also shrugs off: the filesystem keeps no such attribute.
_NO_XATTR = (errno.ENOTSUP, errno.ENODATA, errno.EINVAL)


def _copy_xattrs(src: int, dst: int) -> None:
    try:
        names = os.listxattr(src)
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return
        raise
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError as exc:
            if exc.errno not in (*_NO_XATTR, errno.EPERM):
                raise


def install_tree(source: Path, dest: Path) -> list[str]:
    """Copy the contents of `source` into the existing directory `dest`.

    Returns the relative paths written, so a rollback can remove exactly them.
    """
    rels = [os.path.relpath(entry.path, source) for entry in walk(source)]
    copy_entries(source, dest, rels)
    return rels


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (
        stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode)
        and stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode)
        and (stat.S_ISDIR(a.st_mode) or (a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns))
    )


def installed_copy_changes(template: Path, space: Path) -> list[str]:
    """The template's paths that differ in the space (the seed's files_match, by stat)."""
    changed = []
    for entry in walk(template):
        rel = os.path.relpath(entry.path, template)
        try:
            installed = os.lstat(space / rel)
        except FileNotFoundError:
            changed.append(rel)
            continue
        original = entry.stat(follow_symlinks=False)
        if not _same(original, installed) or (
            stat.S_ISLNK(original.st_mode) and os.readlink(entry.path) != os.readlink(space / rel)
        ):
            changed.append(rel)
    return sorted(changed)


def only_template_inside(template: Path, space: Path) -> bool:
    """True if the space holds the unchanged template and nothing else."""
    template_paths = {os.path.relpath(e.path, template) for e in walk(template)}
    space_paths = {os.path.relpath(e.path, space) for e in walk(space)}
    return space_paths == template_paths and not installed_copy_changes(template, space)


def uninstall_tree(template: Path, space: Path) -> list[str]:
    """Remove the template's files from the space; refuse if any was changed."""
    changed = installed_copy_changes(template, space)
    if changed:
        raise UninstallNotAllowed(
            f"the installed template was changed in the space ({', '.join(changed[:3])}"
            f"{' ...' if len(changed) > 3 else ''}); it holds user data"
        )
    rels = sorted((os.path.relpath(e.path, template) for e in walk(template)), reverse=True)
    removed = []
    for rel in rels:  # deepest first, so directories are empty when we reach them
        target = space / rel
        if target.is_dir() and not target.is_symlink():
            if is_empty(target):
                target.rmdir()
                removed.append(rel)
        else:
            target.unlink()
            removed.append(rel)
    return removed


def reinstall(template: Path, space: Path, rels: list[str]) -> None:
    """Put back template entries an uninstall removed (its rollback)."""
    copy_entries(template, space, rels, skip_existing=True)


def _reflink(source: str, dest: str) -> None:
    with open(source, "rb") as src, open(dest, "wb") as dst:
        fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
    shutil.copystat(source, dest, follow_symlinks=False)


def reflink_supported(directory: Path) -> bool:
    """Ask the filesystem under `directory` whether it can share extents."""
    probe = directory / f".reflink-probe-{uuid.uuid4().hex[:8]}"
    clone = probe.with_suffix(".clone")
    try:
        probe.write_bytes(b"x")
        _reflink(str(probe), str(clone))
        return True
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS):
            return False
        raise
    finally:
        probe.unlink(missing_ok=True)
        clone.unlink(missing_ok=True)


def snapshot_tree(source: Path, dest: Path, mode: str) -> str:
    """A read-only point-in-time tree of `source` at the new path `dest`.

    `auto` takes a reflink copy where the filesystem shares extents and a
    hard-link tree otherwise (instant, but a file changed *in place* in the
    space shows in the snapshot too; files replaced by rename do not).
    Returns the mode used.
    """
    if mode == "auto":
        mode = "reflink" if reflink_supported(dest.parent) else "hardlink"
    links: dict[str, Callable[[str, str], object]] = {
        "reflink": _reflink,
        "hardlink": os.link,
        "copy": lambda source, dest: copy_file(source, dest, os.lstat(source)),
    }
    link = links[mode]
    staging = temp_sibling(dest, "snapshot")
    try:
        shutil.copytree(source, staging, symlinks=True, copy_function=link)
        make_read_only(staging, files_too=mode != "hardlink")
        os.rename(staging, dest)
    except BaseException:
        remove_tree(staging)
        raise
    return mode


def make_read_only(root: Path, files_too: bool) -> None:
    """No entry can be added, removed or renamed below `root`.

    Files keep their modes when they are hard links: the inode is the live
    file's too, and chmod would change the space.
    """
    for entry in walk(root):
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            os.chmod(entry.path, READ_ONLY_DIR)
        elif files_too:
            mode = entry.stat(follow_symlinks=False).st_mode
            os.chmod(entry.path, stat.S_IMODE(mode) & ~0o222)
    os.chmod(root, READ_ONLY_DIR)


def remove_tree(root: Path) -> None:
    """Remove a tree, read-only directories included; never follows symlinks."""
    if not os.path.lexists(root):
        return
    if root.is_symlink() or not root.is_dir():
        root.unlink()
        return
    os.chmod(root, 0o755)
    for entry in walk(root):
        if entry.is_dir(follow_symlinks=False):
            os.chmod(entry.path, 0o755)
    shutil.rmtree(root)
