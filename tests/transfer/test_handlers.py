"""Protocol handlers: names resolve through the registry; primitives do what the engine needs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from storeflow.models.transfer import LocalSource, parse_definition
from storeflow.tasks.transfer import local
from storeflow.tasks.transfer.errors import ProtocolError, UnknownProtocol
from storeflow.tasks.transfer.local import LocalTransfer
from storeflow.tasks.transfer.nfs import NFSTransfer
from storeflow.tasks.transfer.registry import handler_class, protocol_names, registry
from storeflow.tasks.transfer.smb import SMBTransfer
from tests.transfer.conftest import local_def


def test_entry_points_resolve_otf_and_short_names() -> None:
    assert handler_class("local") is LocalTransfer
    assert handler_class("opentaskpy.remotehandlers.local.LocalTransfer") is LocalTransfer
    assert handler_class("smb") is SMBTransfer
    assert handler_class("nfs") is NFSTransfer
    with pytest.raises(UnknownProtocol, match="known: "):
        handler_class("ftp")


def test_registry_groups_names_by_handler() -> None:
    found = registry()
    local = found.find("opentaskpy.remotehandlers.local.LocalTransfer")
    assert local is not None and local.handler is LocalTransfer and local.name == "local"
    assert local.names == ("local", "opentaskpy.remotehandlers.local.LocalTransfer")
    assert {"local", "smb", "nfs"} <= {p.name for p in found.protocols}
    assert found.canonical("opentaskpy.remotehandlers.local.LocalTransfer") == "local"
    assert found.canonical("ftp") is None
    assert LocalTransfer.source_model is LocalSource
    assert set(protocol_names()) >= {"local", "opentaskpy.remotehandlers.local.LocalTransfer"}


def test_delivery_primitives_the_engine_uses(tmp_path: Path) -> None:
    src, dst, done = (tmp_path / n for n in ("src", "dst", "done"))
    for d in (src, dst):
        d.mkdir()
    for name in ("a.csv", "b.csv", "c.txt"):
        (src / name).write_bytes(name.encode())
    definition = parse_definition(
        local_def(
            src,
            dst,
            fileRegex=r".*\.csv",
            postCopyAction={"action": "move", "destination": str(done)},
        )
    )
    with (
        LocalTransfer(definition.source) as source,
        LocalTransfer(definition.destination[0]) as dest,
    ):
        listed = source.list_entries(str(src), r".*\.csv")
        assert [e.name for e in listed] == ["a.csv", "b.csv"] and listed[0].size == 5
        for entry in listed:
            dest.receive(source, entry, dest.temp_path(entry.name), None)
        assert all(n.startswith(".sf-") for n in os.listdir(dst))
        dest.move_files_to_final_location(["a.csv", "b.csv"])
        dest.move_files_to_final_location(["a.csv", "b.csv"])  # a repeat is harmless
        assert sorted(os.listdir(dst)) == ["a.csv", "b.csv"]
        assert (dst / "b.csv").read_bytes() == b"b.csv"

        targets = source.post_copy_targets(["a.csv", "b.csv"])
        assert done.is_dir()  # the move target is created before anything moves
        assert os.listdir(done) == []
        source.apply_post_copy(targets)
        assert sorted(os.listdir(done)) == ["a.csv", "b.csv"]
        assert os.listdir(src) == ["c.txt"]


def _delivered(tmp_path: Path, names: list[str], missing: str) -> tuple[LocalTransfer, Path]:
    """A local destination holding ``names`` under their temporary names, except
    ``missing`` (neither temporary nor final: its rename is a real failure)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    for d in (src, dst):
        d.mkdir()
    dest = LocalTransfer(parse_definition(local_def(src, dst)).destination[0])
    for name in names:
        if name != missing:
            Path(dest.temp_path(name)).write_text(name)
    return dest, dst


def _completed_by_a_repeat(dest: LocalTransfer, dst: Path, names: list[str], missing: str) -> None:
    Path(dest.temp_path(missing)).write_text(missing)
    dest.move_files_to_final_location(iter(names))
    assert sorted(os.listdir(dst)) == names
    assert all((dst / n).read_text() == n for n in names)


def test_renames_in_batches_stop_at_the_first_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of two: the next batch's names are made while the last is renamed; a
    # failure in the second batch leaves the third untouched and names the file.
    monkeypatch.setattr(local, "_RENAME_BATCH", 2)
    names = [f"f{i}" for i in range(7)]
    dest, dst = _delivered(tmp_path, names, "f3")
    with dest:
        with pytest.raises(ProtocolError, match=r"rename.*f3"):
            dest.move_files_to_final_location(names)
        assert sorted(p for p in os.listdir(dst) if not p.startswith(".sf-")) == [
            "f0",
            "f1",
            "f2",
        ]
        assert len(os.listdir(dst)) == 6  # f4, f5, f6 still under temporary names
        _completed_by_a_repeat(dest, dst, names, "f3")
