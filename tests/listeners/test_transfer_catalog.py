"""Files enter the catalog when a transfer delivers them into a space storeflow knows:
in batches (one catalog transaction per batch, not per file), one
`storeflow.file.created` event per new file, and nothing for a destination outside
every known space."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.spaces import space_create
from storeflow.flows.transfers import transfer
from storeflow.models import catalog_repository as catalog
from storeflow.models.db import session_scope
from storeflow.models.schemas import SpaceSpec
from storeflow.models.transfer import parse_definition
from storeflow.tasks import catalog as catalog_steps
from tests.listeners.test_catalog import file_events
from tests.transfer.conftest import local_def

FILES = {f"plate_{n:02d}.csv": f"well,value\nA{n},{n}\n".encode() for n in range(7)}


@pytest.fixture
def config(storeflow_home: Path) -> StoreflowConfig:
    return resolve_config()


@pytest.fixture
def commits() -> Iterator[list[str]]:
    """The database commits that insert catalog rows, as they happen."""
    seen: list[str] = []
    inserting: set[int] = set()

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO CATALOG_FILES"):
            inserting.add(id(conn.connection))

    def on_commit(conn: Any) -> None:
        if id(conn.connection) in inserting:
            inserting.discard(id(conn.connection))
            seen.append("commit")

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "commit", on_commit)


def sources(tmp_path: Path) -> Path:
    src = tmp_path / "incoming"
    src.mkdir(parents=True)
    for name, data in FILES.items():
        (src / name).write_bytes(data)
    return src


def run_transfer(src: Path, dest: Path) -> Any:
    definition = local_def(src, dest)
    definition["destination"][0]["createDirectoryIfNotExists"] = True
    state = transfer(definition=parse_definition(definition), name="plates", return_state=True)
    assert state.is_completed(), state.message
    return state


def test_delivered_files_enter_the_catalog_in_batches_with_one_event_each(
    config: StoreflowConfig,
    tmp_path: Path,
    commits: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert space_create(SpaceSpec(name="lab"), return_state=True).is_completed()
    dest = config.storage.spaces_dir / "lab" / "plates"
    monkeypatch.setattr(catalog_steps, "DELIVERY_BATCH", 3)  # 7 files: batches of 3, 3, 1

    run_transfer(sources(tmp_path), dest)

    with session_scope(config.database_url) as session:
        files = {f.name: f for f in catalog.list_files(session, space="lab")}
    assert sorted(files) == sorted(FILES)
    for name, data in FILES.items():
        found = files[name]
        assert found.path == str((dest / name).resolve()) and found.size == len(data)
        assert found.mime_type in ("text/csv", "text/plain")  # libmagic's verdict
        assert found.dataset == str(dest.resolve())
    assert commits == ["commit"] * 3  # one catalog write per batch, not per file

    events = file_events(dest / "plate_03.csv")
    assert [e.event for e in events] == ["storeflow.file.created"]
    assert dict(events[0].resource.items())["storeflow.file.space"] == "lab"


def test_a_destination_outside_every_known_space_is_not_catalogued(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    # A directory under the spaces root that no space owns, and one outside it.
    stray = config.storage.spaces_dir / "not-a-space" / "in"
    outside = tmp_path / "elsewhere"
    for dest in (stray, outside):
        run_transfer(sources(tmp_path / f"from-{dest.parent.name}"), dest)
        assert sorted(os.listdir(dest)) == sorted(FILES)
    with session_scope(config.database_url) as session:
        assert catalog.list_files(session) == []


def test_a_destination_reached_through_a_symlink_is_catalogued_in_its_space(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    """The space of a delivered file is where its path resolves: a destination given as
    a symlink to a directory of a space is that space's."""
    assert space_create(SpaceSpec(name="lab"), return_state=True).is_completed()
    real = config.storage.spaces_dir / "lab" / "plates"
    real.mkdir(parents=True)
    link = tmp_path / "to-plates"
    link.symlink_to(real)
    run_transfer(sources(tmp_path), link)
    with session_scope(config.database_url) as session:
        files = catalog.list_files(session, space="lab")
    assert sorted(f.name for f in files) == sorted(FILES)
    assert {f.path for f in files} == {str((real / name).resolve()) for name in FILES}


def test_space_of_a_path(config: StoreflowConfig, tmp_path: Path) -> None:
    root = config.storage.spaces_dir.resolve()
    assert catalog_steps.space_of(config, root / "lab" / "a" / "b.csv") == "lab"
    assert catalog_steps.space_of(config, root / "lab" / "b.csv") == "lab"
    assert catalog_steps.space_of(config, root / "lab") == ""  # the space itself
    assert catalog_steps.space_of(config, root) == ""
    # A sibling whose name starts like the root is outside it.
    assert catalog_steps.space_of(config, Path(f"{root}-other") / "lab" / "b.csv") == ""
    assert catalog_steps.space_of(config, tmp_path / "lab" / "b.csv") == ""
