"""The file catalog: MIME type from content, one event per new or changed file, the CLI."""

import json
import os
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.models import catalog_repository as catalog
from storeflow.models.catalog_repository import Change
from storeflow.models.db import session_scope
from storeflow.tasks.catalog import register

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def file_events(path: Path, timeout: float = 30) -> list[Any]:
    """The storeflow.file.* events the Prefect server holds for one path (ids repeat
    across tests: each test has its own catalog, the session one Prefect server)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    wanted = EventFilter(
        event=EventNameFilter(prefix=["storeflow.file."]),
        resource=EventResourceFilter(
            labels=ResourceSpecification({"storeflow.file.path": str(path.resolve())})
        ),
    )
    deadline = time.monotonic() + timeout
    events: list[Any] = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            events = list(client.read_events(filter=wanted, limit=50).events)
            if events:
                time.sleep(1)  # let any second event land too
                return list(client.read_events(filter=wanted, limit=50).events)
            time.sleep(0.5)
    return events


def test_mime_type_comes_from_content_not_the_name(tmp_path: Path) -> None:
    disguised = tmp_path / "picture.txt"
    disguised.write_bytes(PNG)
    file, change = register(StoreflowConfig(), disguised)
    assert change is Change.CREATED
    assert file.mime_type == "image/png"
    assert file.size == len(PNG) and file.name == "picture.txt"
    assert file.dataset == str(tmp_path.resolve()) and file.space == ""
    assert file.checksum is not None and file.checksum.startswith("sha256:")


def test_a_file_in_a_space_belongs_to_it(tmp_path: Path) -> None:
    config = StoreflowConfig()
    inside = config.storage.spaces_dir / "alpha" / "raw" / "a.csv"
    inside.parent.mkdir(parents=True)
    inside.write_text("x,y\n1,2\n")
    file, _ = register(config, inside)
    assert file.space == "alpha"


def test_one_event_per_new_or_changed_file_none_when_unchanged(tmp_path: Path) -> None:
    config = StoreflowConfig()
    data = tmp_path / "notes.txt"
    data.write_text("first\n")
    file, change = register(config, data)
    assert change is Change.CREATED
    assert register(config, data)[1] is Change.UNCHANGED
    data.write_text("second, longer\n")
    os.utime(data, (time.time() + 5, time.time() + 5))
    changed, change = register(config, data)
    assert change is Change.UPDATED and changed.id == file.id and changed.size == 15

    events = sorted(file_events(data), key=lambda e: e.occurred)
    assert [e.event for e in events] == ["storeflow.file.created", "storeflow.file.updated"]
    labels = dict(events[-1].resource.items())
    assert labels["storeflow.file.path"] == str(data.resolve())
    assert labels["storeflow.file.mime-type"] == "text/plain"
    assert labels["storeflow.file.size"] == "15"
    assert labels["storeflow.file.dataset"] == str(tmp_path.resolve())
    for key in ("id", "space", "name", "owner", "group"):
        assert f"storeflow.file.{key}" in labels


def test_cli_register_list_show(tmp_path: Path) -> None:
    data = tmp_path / "table.csv"
    data.write_text("a,b\n1,2\n")
    code, out, err = invoke("file", "register", str(data), "--json")
    assert code == 0, err
    registered = json.loads(out)
    assert registered["change"] == "created"
    file_id = registered["file"]["id"]

    code, out, _ = invoke("file", "list", "--json")
    assert code == 0 and [f["path"] for f in json.loads(out)] == [str(data.resolve())]

    with session_scope(StoreflowConfig().database_url) as session:
        catalog.add_metadata(session, file_id, {"lines": 2}, agent_type="user", agent="alice")
    code, out, _ = invoke("file", "show", str(file_id), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["metadata"][0]["content"] == {"lines": 2}
    assert shown["metadata"][0]["agent"] == "alice"


def test_cli_refuses_a_missing_file_or_a_directory_in_one_line(tmp_path: Path) -> None:
    code, out, err = invoke("file", "register", str(tmp_path / "nope"))
    assert code == 2 and out == "" and err.strip().startswith("error: path:")
    code, _, err = invoke("file", "register", str(tmp_path))
    assert code == 2 and "is not a regular file" in err
    code, _, err = invoke("file", "show", "999")
    assert code == 2 and "not in the catalog" in err
    with session_scope(StoreflowConfig().database_url) as session:
        assert catalog.list_files(session) == []


def test_a_scan_registers_new_and_changed_files_and_skips_hidden_ones(tmp_path: Path) -> None:
    config = StoreflowConfig()
    space = config.storage.spaces_dir / "beta"
    (space / "sub").mkdir(parents=True)
    (space / "a.txt").write_text("a\n")
    (space / "sub" / "b.png").write_bytes(PNG)
    (space / ".partial.upload").write_text("half")

    code, out, err = invoke("file", "scan", "--space", "beta", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert (
        first["state"] == "Scanned"
        and first["message"] == "2 new, 0 changed, 0 unchanged, 1 skipped"
    )
    with session_scope(config.database_url) as session:
        files = {f.name: f for f in catalog.list_files(session, space="beta")}
    assert sorted(files) == ["a.txt", "b.png"] and files["b.png"].mime_type == "image/png"

    (space / "a.txt").write_text("a, longer now\n")
    os.utime(space / "a.txt", (time.time() + 5, time.time() + 5))
    code, out, _ = invoke("file", "scan", "--space", "beta", "--json")
    assert json.loads(out)["message"] == "0 new, 1 changed, 1 unchanged, 1 skipped"

    code, _, err = invoke("file", "scan", str(tmp_path / "missing"))
    assert code == 1 and "is not a directory" in err


def test_the_watcher_registers_files_as_they_are_closed(tmp_path: Path) -> None:
    from storeflow.services.watcher import SpaceWatcher
    from tests.listeners.broker import wait_for

    config = StoreflowConfig()
    watcher = SpaceWatcher(config).start()
    try:
        folder = config.storage.spaces_dir / "gamma" / "in"
        folder.mkdir(parents=True)
        (folder / "written.txt").write_text("closed after writing\n")
        partial = folder / ".upload.part"
        partial.write_bytes(PNG)
        partial.rename(folder / "renamed.png")

        def names() -> list[str] | None:
            with session_scope(config.database_url) as session:
                found = sorted(f.name for f in catalog.list_files(session, space="gamma"))
            return found if len(found) == 2 else None

        assert wait_for(names, 60, "the watcher") == ["renamed.png", "written.txt"]
        with session_scope(config.database_url) as session:
            png = catalog.find(session, str((folder / "renamed.png").resolve()))
        assert png.mime_type == "image/png"
    finally:
        watcher.stop()


def test_the_scheduled_scan_covers_every_space(tmp_path: Path) -> None:
    """The `file-scan` deployment runs on a schedule with its defaults: every space."""
    import yaml

    from storeflow.flows.files import file_scan

    root = Path(__file__).resolve().parents[2]
    deployments = yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]
    (scan,) = [d for d in deployments if d["name"] == "file-scan"]
    assert [s["interval"] for s in scan["schedules"] if s.get("active")] == [900]
    assert "parameters" not in scan  # the schedule's runs take the flow's defaults

    config = StoreflowConfig()
    for space in ("one", "two"):
        (config.storage.spaces_dir / space).mkdir(parents=True)
        (config.storage.spaces_dir / space / f"{space}.txt").write_text(space)
    state = file_scan(return_state=True)
    assert state.name == "Scanned" and (state.message or "").startswith("2 new"), state.message
    with session_scope(config.database_url) as session:
        found = {(f.space, f.name) for f in catalog.list_files(session)}
    assert found == {("one", "one.txt"), ("two", "two.txt")}
