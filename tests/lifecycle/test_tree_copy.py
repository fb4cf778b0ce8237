"""The tree copy templates and spaces are built with (tasks/fstools.py): what `cp -a`
keeps is kept, links are never followed, nothing is written through what is there."""

import os
import stat
from pathlib import Path

import pytest

from storeflow.tasks import fstools


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "template"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"alpha" * 1000)
    (root / "docs" / "deep" / "empty").write_bytes(b"")
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o751)
    os.setxattr(root / "docs" / "a.txt", "user.origin", b"lab-3")
    os.symlink("../outside", root / "docs" / "link")  # dangling: copied as a link
    for i, path in enumerate(sorted(root.rglob("*"), reverse=True)):
        os.utime(path, ns=(1_000_000_000 * i, 2_000_000_007 * (i + 1)), follow_symlinks=False)
    os.chmod(root / "docs" / "deep", 0o700)
    return root


def _described(root: Path) -> dict[str, tuple[object, ...]]:
    """Each entry's type, mode, mtime, bytes or link target, and extended attributes."""
    seen: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            seen[str(path.relative_to(root))] = ("link", os.readlink(path), st.st_mtime_ns)
            continue
        content = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
        xattrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
        seen[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, content, xattrs)
    return seen


def test_install_keeps_modes_times_xattrs_and_links(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "space"
    dest.mkdir()
    written = fstools.install_tree(tree, dest)
    assert _described(dest) == _described(tree)
    assert sorted(written) == sorted(_described(tree))
    # As installed, so an uninstall finds it unchanged (a link's time is compared too).
    assert fstools.only_template_inside(tree, dest)


def test_copy_tree_keeps_the_root_and_leaves_nothing_on_failure(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "store" / "copy"
    dest.parent.mkdir()
    fstools.copy_tree(tree, dest)
    assert dest.stat().st_mtime_ns == tree.stat().st_mtime_ns
    assert _described(dest).keys() == _described(tree).keys()

    os.mkfifo(tree / "docs" / "pipe")
    with pytest.raises(fstools.CopyNotAllowed, match="pipe is not a file, directory"):
        fstools.copy_tree(tree, tmp_path / "store" / "second")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["copy"]  # no staging left


def test_nothing_is_written_through_an_entry_already_there(tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "space"
    (dest / "docs").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    os.symlink(victim, dest / "docs" / "a.txt")
    with pytest.raises(FileExistsError):
        fstools.copy_entries(tree, dest, ["docs/a.txt"])
    assert victim.read_bytes() == b"keep me"
    # A reinstall keeps what is there and puts back only what is missing.
    fstools.copy_entries(tree, dest, ["docs", "docs/a.txt", "run.sh"], skip_existing=True)
    assert victim.read_bytes() == b"keep me"
    assert (dest / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o751
    assert (dest / "docs").stat().st_mtime_ns == (tree / "docs").stat().st_mtime_ns


def test_a_copy_mode_snapshot_refuses_a_fifo_and_leaves_nothing(tree: Path, tmp_path: Path) -> None:
    """A fifo is refused, not opened (opening one waits for a writer forever)."""
    os.mkfifo(tree / "docs" / "pipe")
    base = tmp_path / "snapshots"
    base.mkdir()
    with pytest.raises(fstools.CopyNotAllowed, match="pipe is not a file, directory"):
        fstools.snapshot_tree(tree, base / "day-1", "copy")
    assert list(base.iterdir()) == []
