"""A local listing in chunks (LocalTransfer.list_entry_chunks): the names are read and
sorted first, each chunk's files stat'ed by the native loop one chunk ahead of the one
asked for, so the FILTER callbacks answer a chunk while the next is listed; and the
metadata of a chunk's files, read at once (metadata.read_many) for the callbacks' rows."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import cast

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import Entry, native, run_transfer
from storeflow.tasks.transfer import metadata as transfer_metadata
from storeflow.tasks.transfer.engine import FILTER_BATCH
from storeflow.tasks.transfer.errors import ProtocolError
from storeflow.tasks.transfer.local import LocalTransfer
from tests.transfer.conftest import local_def

Dirs = Callable[[str], Path]


def _handler(src: Path, dst: Path) -> LocalTransfer:
    spec = parse_definition(local_def(src, dst))
    return LocalTransfer(spec.source.protocol)  # type: ignore[arg-type]


def test_chunks_are_the_listing_in_name_order(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    for i in (5, 3, 9, 1, 7, 0, 2):
        (src / f"f{i}").write_bytes(b"x" * i)
    (src / "sub").mkdir()
    (src / "skip.txt").write_bytes(b"")
    (src / "link").symlink_to(src / "f9")
    (src / "outside").symlink_to("/etc/hostname")
    handler = _handler(src, dst)
    chunks = list(handler.list_entry_chunks(str(src), r"f\d|link|outside|sub", 3))
    assert [[e.name for e in c] for c in chunks] == [
        ["f0", "f1", "f2"],
        ["f3", "f5", "f7"],
        ["f9", "link"],
    ]
    listed = [e for c in chunks for e in c]
    assert listed == handler.list_entries(str(src), r"f\d|link|outside|sub")
    link = listed[-1]
    assert (link.path, link.size) == (str(src / "f9"), 9)  # its target's, inside src
    assert [e.size for e in listed[:-1]] == [0, 1, 2, 3, 5, 7, 9]


def test_a_file_gone_before_its_chunk_is_listed_is_not_an_error(dirs: Dirs) -> None:
    """The filter of the first chunk removes a file of the third: that file was never
    listed (its stat came after: the listing stats the second chunk while the first is
    filtered, the third only once the second is asked for), and the transfer copies the
    rest."""
    src, dst = dirs("src"), dirs("dst")
    count = 2 * FILTER_BATCH + 10
    for i in range(count):
        (src / f"f{i:05}").write_bytes(b"x")
    late = src / f"f{2 * FILTER_BATCH + 3:05}"
    calls: list[int] = []

    def remove_a_later_file(chunk: Sequence[Entry]) -> list[bool]:
        calls.append(len(chunk))
        if len(calls) == 1:
            os.unlink(late)
        return [True] * len(chunk)

    result = run_transfer(parse_definition(local_def(src, dst)), batch_filter=remove_a_later_file)
    assert calls == [FILTER_BATCH, FILTER_BATCH, 9]
    assert len(result.files) == count - 1 and late.name not in result.files
    assert sorted(os.listdir(dst)) == sorted(p.name for p in src.iterdir())


def test_metadata_of_many_files_is_what_each_file_carries(tmp_path: Path) -> None:
    """read_many (the native loop says which files carry storeflow's attributes; only
    those are read) gives what read gives file by file: a file with other attributes
    only, one with none, and one that is gone included."""
    paths = [tmp_path / f"f{i}" for i in range(5)]
    for path in paths:
        path.write_bytes(b"")
    transfer_metadata.write(str(paths[1]), {"origin": "one", "k": "\u00e9"})
    os.setxattr(paths[2], "user.other", b"not ours")
    os.setxattr(paths[3], "user.other", b"")
    transfer_metadata.write(str(paths[3]), {"big": "x" * 2000})
    names = [str(p) for p in paths] + [str(tmp_path / "gone")]
    many = transfer_metadata.read_many(names)
    assert many == [transfer_metadata.read(n) for n in names]
    assert many == [{}, {"origin": "one", "k": "\u00e9"}, {}, {"big": "x" * 2000}, {}, {}]
    assert native.tagged(names, b"user.storeflow.") == [
        0, 1, 0, 1, 0, -1
    ]  # fmt: skip


def test_the_native_stat_of_a_chunk_lists_what_os_stat_would(
    dirs: Dirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's files are stat'ed by one native call (native.stat_names): modes, owners,
    sizes and the three times to the nanosecond are os.stat's, a name that is not UTF-8
    included; a name gone is ENOENT; and the listing is the same entries as with the
    native loop off (os.stat a file at a time)."""
    src, dst = dirs("src"), dirs("dst")
    raw = os.fsdecode(b"caf\xe9")
    for i, name in enumerate(["a", "b", raw, "d"]):
        path = src / name
        path.write_bytes(b"x" * (i * 1000))
        path.chmod(0o600 + i)
        os.utime(path, ns=(1_600_000_000_123_456_789 + i, 1_700_000_000_987_654_321 - i))
    (src / "link").symlink_to(src / "a")
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        names = [*sorted(os.listdir(fd)), "gone"]
        stats = native.stat_names(fd, names)
        assert stats is not None
        for i, name in enumerate(names[:-1]):
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            expected = [st.st_mode, st.st_uid, st.st_gid, st.st_size]
            expected += [st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, 0]
            assert stats[i * native.STAT_FIELDS : (i + 1) * native.STAT_FIELDS] == expected
        assert stats[-native.STAT_FIELDS :] == [0] * 7 + [errno.ENOENT]
    finally:
        os.close(fd)
    handler = _handler(src, dst)
    fast = list(handler.list_entry_chunks(str(src), ".*", 2))
    monkeypatch.setattr(native, "stat_names", lambda fd, names: None)
    monkeypatch.setattr(native, "stat_names_job", lambda fd, names, ahead: None)
    slow = list(handler.list_entry_chunks(str(src), ".*", 2))
    assert fast == slow and sum(len(c) for c in fast) == 5
    assert [e.mtime_ns for c in fast for e in c if e.name != "link"] == [
        1_700_000_000_987_654_321 - i for i in range(4)
    ]  # a, b, caf\xe9, d


def test_a_stat_that_fails_names_the_file(dirs: Dirs) -> None:
    """A chunk's stat failing otherwise than for a file gone raises the protocol error
    with the file's path and the reason (a name too long, here)."""
    src, dst = dirs("src"), dirs("dst")
    handler = _handler(src, dst)
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(ProtocolError, match="File name too long") as failed:
            list(handler._stats(fd, f"{src}/", ["x" * 300]))
        assert str(src / ("x" * 300)) in str(failed.value)
    finally:
        os.close(fd)


def test_metadata_of_files_in_several_directories_and_through_links(tmp_path: Path) -> None:
    """The probe names each file relative to its directory, kept open while the next
    files share it: files of two directories taken in turns, a link (followed, as
    listxattr does) and a directory that is gone all get what read gives."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    for directory in (one, two):
        for name in ("plain", "tagged"):
            (directory / name).write_bytes(b"")
        transfer_metadata.write(str(directory / "tagged"), {"from": directory.name})
    (two / "link").symlink_to(one / "tagged")
    names = [
        str(one / "plain"), str(two / "tagged"), str(one / "tagged"), str(two / "plain"),
        str(two / "link"), str(tmp_path / "gone" / "x"), str(two / "tagged"),
    ]  # fmt: skip
    assert native.tagged(names, b"user.storeflow.") == [0, 1, 1, 0, 1, -1, 1]
    many = transfer_metadata.read_many(names)
    assert many == [transfer_metadata.read(n) for n in names]
    assert [m.get("from") for m in many] == [None, "two", "one", None, "one", None, "two"]


def test_the_native_loops_run_ahead_answer_as_when_called(dirs: Dirs) -> None:
    """stat_names_job and tagged_job run ahead on a thread of their own: their results
    are the plain calls' (an empty chunk too), and one dropped unasked is waited for
    before its buffers go."""
    src = dirs("src")
    for i in range(50):
        (src / f"f{i:02}").write_bytes(b"x" * i)
    transfer_metadata.write(str(src / "f07"), {"k": "v"})
    names = sorted(os.listdir(src))
    paths = [str(src / n) for n in names]
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        stat = native.stat_names_job(fd, names, ahead=True)
        probe = native.tagged_job(paths, b"user.storeflow.", ahead=True)
        assert stat is not None and probe is not None
        assert stat.result() == native.stat_names(fd, names)
        assert probe.result() == native.tagged(paths, b"user.storeflow.")
        assert probe.result()[7] == 1 and sum(probe.result()) == 1
        empty = native.stat_names_job(fd, [], ahead=True)
        assert empty is not None and empty.result() == []
        for _ in range(20):
            native.stat_names_job(fd, names, ahead=True)  # dropped at once, still running
    finally:
        os.close(fd)


def test_a_listing_left_after_its_first_chunk_closes_its_directory(dirs: Dirs) -> None:
    """A caller that stops after the first chunk (a failed plan) leaves no descriptor
    open: the stat running ahead for the second chunk is waited for, then the directory
    is closed."""
    src, dst = dirs("src"), dirs("dst")
    for i in range(30):
        (src / f"f{i:02}").write_bytes(b"")
    handler = _handler(src, dst)
    before = set(os.listdir("/proc/self/fd"))
    chunks = cast(Generator[list[Entry]], handler.list_entry_chunks(str(src), ".*", 10))
    assert [e.name for e in next(chunks)] == [f"f{i:02}" for i in range(10)]
    assert set(os.listdir("/proc/self/fd")) != before  # the directory, open
    chunks.close()
    assert set(os.listdir("/proc/self/fd")) == before
