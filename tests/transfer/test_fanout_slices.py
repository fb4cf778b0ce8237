"""Fan-out's slices (tasks/transfer/fanout.py): balanced by bytes, every file exactly once,
passed to a child as a parameter and back; a child run delivers only under temporary
names."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from storeflow.flows.transfer_batches import transfer_batch
from storeflow.flows.transfers import transfer
from storeflow.models.transfer import TransferDefinition, parse_definition
from storeflow.tasks.transfer import PlannedFile
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.fanout import (
    MAX_SLICE_FILES,
    FanOutRefused,
    SliceFile,
    as_slice,
    check_definition,
    check_slices,
    planned_of,
    split_by_bytes,
)
from storeflow.tasks.transfer.names import is_temp_name, temp_name
from tests.transfer.conftest import local_def


def planned(name: str, size: int) -> PlannedFile:
    entry = Entry(name, Kind.FILE, f"/src/{name}", size, 11, 12, 13, 0o644, 1, 2)
    return PlannedFile(entry, (name, f"renamed-{name}"))


def test_slices_hold_every_file_once_and_are_balanced_by_bytes() -> None:
    rng = random.Random(7)
    files = [planned(f"f{i:03}", rng.randrange(1, 10_000_000)) for i in range(200)]
    for parts in (1, 2, 3, 7, 64):
        slices = split_by_bytes(files, parts)
        assert len(slices) == parts
        names = [p.entry.name for s in slices for p in s]
        assert sorted(names) == sorted(p.entry.name for p in files)  # each exactly once
        loads = [sum(p.entry.size for p in s) for s in slices]
        biggest = max(p.entry.size for p in files)
        # Largest first to the lightest: within one file of even.
        assert max(loads) - min(loads) <= biggest, (parts, loads)
        for part in slices:  # the plan's order kept inside a slice
            assert [p.entry.name for p in part] == sorted(p.entry.name for p in part)


def test_one_huge_file_gets_a_slice_of_its_own_and_no_slice_is_empty() -> None:
    files = [planned("huge", 10**12), *(planned(f"s{i}", 10) for i in range(9))]
    slices = split_by_bytes(files, 2)
    assert [[p.entry.name for p in s] for s in slices] == [
        ["huge"],
        [f"s{i}" for i in range(9)],
    ]
    assert [len(s) for s in split_by_bytes(files[:3], 8)] == [1, 1, 1]
    assert split_by_bytes([], 4) == []


def test_a_slice_goes_through_a_parameter_and_back_unchanged() -> None:
    files = [planned("a.bin", 5), planned("b.bin", 7)]
    sent = as_slice(files, {"b.bin": {"owner": "lab"}})
    received = [SliceFile.model_validate(s.model_dump(mode="json")) for s in sent]
    assert planned_of(received) == tuple(files)
    assert [s.metadata for s in received] == [{}, {"owner": "lab"}]


def test_too_big_a_slice_and_inline_passwords_are_refused(tmp_path: Path) -> None:
    check_slices([[planned("x", 1)] * MAX_SLICE_FILES])
    with pytest.raises(FanOutRefused, match="a slice of 2001 files is more than 2000"):
        check_slices([[planned("x", 1)] * (MAX_SLICE_FILES + 1)])
    raw = local_def(tmp_path, tmp_path / "out")
    raw["destination"][0]["protocol"] = {
        "name": "smb",
        "credentials": {"host": "h", "share": "s", "username": "u", "password": "secret"},
    }
    with pytest.raises(FanOutRefused, match="inline credentials"):
        check_definition(parse_definition(raw, "t"))
    check_definition(parse_definition(local_def(tmp_path, tmp_path / "out"), "t"))


def test_the_definition_survives_the_childs_parameter(tmp_path: Path) -> None:
    raw = local_def(tmp_path, tmp_path / "out", fileRegex=r".*\.bin")
    raw["destination"][0]["rename"] = {"pattern": r"(.*)\.bin", "sub": r"\1.dat"}
    definition = parse_definition(raw, "t")
    sent = definition.model_dump(mode="json", by_alias=True)
    assert TransferDefinition.model_validate(sent) == definition


def test_a_child_run_delivers_its_slice_under_temporary_names_only(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    entries = []
    for i in range(5):
        path = src / f"f{i}.bin"
        path.write_bytes(os.urandom(1000 + i))
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000 + i))
        st = path.stat()
        entries.append(
            PlannedFile(
                Entry(path.name, Kind.FILE, str(path), st.st_size, st.st_mtime_ns,
                      st.st_atime_ns, st.st_ctime_ns, st.st_mode, st.st_uid, st.st_gid),
                (path.name,),
            )
        )  # fmt: skip
    definition = parse_definition(local_def(src, out), "t")
    mine = entries[:3]  # the other two belong to another child
    state = transfer_batch(
        definition=definition,
        name=str(src),  # a transfer without a name goes by its source directory
        files=as_slice(mine, {}),
        part=1,
        parts=2,
        return_state=True,
    )
    assert (state.type.value, state.name) == ("COMPLETED", "Delivered"), state.message
    assert state.message == f"transfer/{src}: batch 1/2: 3 files, 3003 bytes under temporary names"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(temp_name(p.entry.name) for p in mine)  # nothing final
    assert all(is_temp_name(n) for n in names)
    for p in mine:
        copy = out / temp_name(p.entry.name)
        assert copy.read_bytes() == Path(p.entry.path).read_bytes()
        assert copy.stat().st_mtime_ns == p.entry.mtime_ns


def test_a_child_whose_file_is_gone_fails_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("a.bin", "b.bin"):
        (src / name).write_bytes(b"x" * 100)
    files = [planned("a.bin", 100), planned("b.bin", 100)]
    files = [
        PlannedFile(Entry(p.entry.name, Kind.FILE, str(src / p.entry.name), 100), (p.entry.name,))
        for p in files
    ]
    (src / "b.bin").unlink()
    definition = parse_definition(local_def(src, out), "t")
    state = transfer_batch(
        definition=definition, name="fan", files=as_slice(files, {}), return_state=True
    )
    assert (state.type.value, state.name) == ("FAILED", "Errored")
    assert state.message is not None and "b.bin" in state.message
    assert list(out.iterdir()) == []


def test_a_transfer_whose_slices_are_too_big_ends_refused_with_nothing_copied(
    tmp_path: Path,
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for i in range(2 * MAX_SLICE_FILES + 2):
        (src / f"f{i:05}").write_bytes(b"x")
    state = transfer(definition=local_def(src, out), name="huge", fan_out=2, return_state=True)
    assert (state.type.value, state.name) == ("FAILED", "Refused"), state.message
    assert state.message == (
        "transfer/huge: fan-out: a slice of 2001 files is more than 2000 (fan-out is for "
        "large files or a few thousand files; raise fan_out or copy without it)"
    )
    assert list(out.iterdir()) == []


def test_fan_out_refuses_an_otf_addon_definition() -> None:
    state = transfer(otf_definition={"type": "transfer"}, fan_out=2, return_state=True)
    assert (state.type.value, state.name) == ("FAILED", "Refused")
    assert state.message == "transfer: fan_out does not take an otf_definition"
