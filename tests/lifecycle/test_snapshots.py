"""Snapshots: read-only, point in time, cheap."""

import os
import stat
from pathlib import Path

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.snapshots import snapshot_create, snapshot_delete
from storeflow.flows.spaces import space_create, space_delete
from storeflow.models.schemas import SnapshotSpec, SpaceSpec
from tests.lifecycle.conftest import exists, read, run, tree


def make_space(config: StoreflowConfig, name: str = "data") -> Path:
    assert run(space_create, spec=SpaceSpec(name=name)).name == "Active"
    path = config.storage.spaces_dir / name
    (path / "results").mkdir()
    (path / "results" / "run1.csv").write_text("1,2,3\n")
    (path / "notes.txt").write_text("first\n")
    return path


def test_snapshot_is_a_read_only_point_in_time_tree(config: StoreflowConfig) -> None:
    space = make_space(config)
    before = tree(space)

    state = run(snapshot_create, spec=SnapshotSpec(space="data", name="monday"))

    assert state.name == "Active", state.message
    snap = read(config, "snapshot", "monday", space="data")
    snap_dir = Path(snap.state["path"])
    assert tree(snap_dir) == before
    assert snap.state["mode"] in ("reflink", "hardlink")  # never a full copy by default
    # Read-only: no directory below it can be written.
    for directory in [snap_dir, *[p for p in snap_dir.rglob("*") if p.is_dir()]]:
        assert stat.S_IMODE(directory.stat().st_mode) == 0o555
    # Point in time: what changes in the space (replaced, added, removed) does not show.
    (space / "notes.txt.new").write_text("second\n")
    os.replace(space / "notes.txt.new", space / "notes.txt")
    (space / "results" / "run2.csv").write_text("4\n")
    (space / "results" / "run1.csv").unlink()
    assert tree(snap_dir) == before


def test_hard_link_snapshot_shares_inodes(config: StoreflowConfig) -> None:
    space = make_space(config)
    run(snapshot_create, spec=SnapshotSpec(space="data", name="linked", mode="hardlink"))
    snap_dir = Path(read(config, "snapshot", "linked", space="data").state["path"])
    assert (snap_dir / "notes.txt").stat().st_ino == (space / "notes.txt").stat().st_ino


def test_copy_mode_makes_files_read_only_too(config: StoreflowConfig) -> None:
    make_space(config)
    run(snapshot_create, spec=SnapshotSpec(space="data", name="copied", mode="copy"))
    snap_dir = Path(read(config, "snapshot", "copied", space="data").state["path"])
    assert stat.S_IMODE((snap_dir / "notes.txt").stat().st_mode) & 0o222 == 0


def test_snapshot_names_are_per_space_and_delete_removes_the_tree(
    config: StoreflowConfig,
) -> None:
    make_space(config, "one")
    make_space(config, "two")
    assert run(snapshot_create, spec=SnapshotSpec(space="one", name="daily")).name == "Active"
    assert run(snapshot_create, spec=SnapshotSpec(space="two", name="daily")).name == "Active"
    snap = read(config, "snapshot", "daily", space="one")

    state = run(snapshot_delete, space="one", name="daily", etag=snap.etag)

    assert state.name == "Deleted", state.message
    assert not Path(snap.state["path"]).exists()
    assert not exists(config, "snapshot", "daily", space="one")
    assert exists(config, "snapshot", "daily", space="two")


def test_space_with_snapshots_cannot_be_deleted(config: StoreflowConfig) -> None:
    make_space(config)
    run(snapshot_create, spec=SnapshotSpec(space="data", name="keep"))
    space = read(config, "space", "data")
    state = run(space_delete, name="data", etag=space.etag, force=True)
    assert state.name == "Refused" and "has snapshots (keep)" in str(state.message)


def test_snapshot_of_unknown_space_is_refused(config: StoreflowConfig) -> None:
    state = run(snapshot_create, spec=SnapshotSpec(space="nope", name="x"))
    assert state.name == "Refused" and "space 'nope' does not exist" in str(state.message)
