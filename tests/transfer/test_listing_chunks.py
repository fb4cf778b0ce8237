"""A local listing in chunks (LocalTransfer.list_entry_chunks): the names are read and
sorted first, each chunk's files stat'ed only when the chunk is asked for, so the
FILTER callbacks answer a chunk while the next is listed; and the metadata of a chunk's
files, read at once (metadata.read_many) for the callbacks' rows."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import Entry, native, run_transfer
from storeflow.tasks.transfer import metadata as transfer_metadata
from storeflow.tasks.transfer.engine import FILTER_BATCH
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
    """The filter of the first chunk removes a file of the second: that file was never
    listed (its stat came after), and the transfer copies the rest."""
    src, dst = dirs("src"), dirs("dst")
    count = FILTER_BATCH + 10
    for i in range(count):
        (src / f"f{i:05}").write_bytes(b"x")
    late = src / f"f{FILTER_BATCH + 3:05}"
    calls: list[int] = []

    def remove_a_later_file(chunk: Sequence[Entry]) -> list[bool]:
        calls.append(len(chunk))
        if len(calls) == 1:
            os.unlink(late)
        return [True] * len(chunk)

    result = run_transfer(parse_definition(local_def(src, dst)), batch_filter=remove_a_later_file)
    assert calls == [FILTER_BATCH, 9]
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
    assert native.tagged([os.fsencode(n) for n in names], b"user.storeflow.") == [
        0, 1, 0, 1, 0, -1
    ]  # fmt: skip
