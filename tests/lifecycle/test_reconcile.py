"""Reconcile: adopt, mark missing, recover, release stale locks, clean leftovers."""

import uuid

from prefect.client.orchestration import get_client

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.reconcile import reconcile
from storeflow.flows.spaces import space_create
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.schemas import SpaceSpec
from storeflow.models.status import Status
from storeflow.tasks.reconcile import INTERRUPTED, MISSING
from tests.lifecycle.conftest import read, run


def changes_of(state) -> set[tuple[str, str, str]]:
    return {(c.kind, c.name, c.change) for c in state.result()}


def test_unknown_directories_are_adopted(config: StoreflowConfig) -> None:
    config.storage.ensure_layout()
    (config.storage.spaces_dir / "legacy").mkdir()
    (config.storage.spaces_dir / "legacy" / "old.dat").write_bytes(b"x" * 10)
    (config.storage.templates_dir / "old-template").mkdir()
    (config.storage.spaces_dir / ".hidden").mkdir()  # not a resource name: ignored

    state = run(reconcile)

    assert changes_of(state) == {
        ("space", "legacy", "adopted"),
        ("template", "old-template", "adopted"),
    }
    legacy = read(config, "space", "legacy")
    assert legacy.status is Status.ACTIVE and legacy.state["usage_bytes"] == 10
    assert run(reconcile).result() == []  # a second pass finds nothing to do


def test_missing_directory_errors_and_recovers(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="vanishing"))
    path = config.storage.spaces_dir / "vanishing"
    path.rename(config.storage.root / "elsewhere")

    assert ("space", "vanishing", "errored") in changes_of(run(reconcile))
    space = read(config, "space", "vanishing")
    assert space.status is Status.ERRORED and space.status_message == MISSING

    (config.storage.root / "elsewhere").rename(path)
    assert ("space", "vanishing", "recovered") in changes_of(run(reconcile))
    assert read(config, "space", "vanishing").status is Status.ACTIVE


def test_lock_of_a_run_that_ended_is_released(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="wedged"))
    space = read(config, "space", "wedged")
    dead_run = str(uuid.uuid4())  # a flow run the server never heard of
    with session_scope(config.database_url) as session:
        repository.acquire(
            session, space.id, space.etag, dead_run, Status.INPROGRESS, action="update", lease=60
        )

    state = run(reconcile)

    assert ("space", "wedged", "released") in changes_of(state)
    released = read(config, "space", "wedged")
    assert released.status is Status.ERRORED and released.status_message == INTERRUPTED
    assert released.lock_owner is None


def test_half_deleted_tree_is_put_back(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="interrupted"))
    path = config.storage.spaces_dir / "interrupted"
    (path / "data").write_text("precious")
    # What a delete that died between perform and commit leaves behind.
    path.rename(path.with_name(f".interrupted.deleting-{uuid.uuid4().hex[:12]}"))
    (config.storage.spaces_dir / f".other.copy-{uuid.uuid4().hex[:12]}").mkdir()

    assert {("space", "interrupted", "restored"), ("space", "other", "cleaned")} <= changes_of(
        run(reconcile)
    )
    assert (path / "data").read_text() == "precious"
    assert sorted(p.name for p in config.storage.spaces_dir.iterdir()) == ["interrupted"]


def test_reconcile_publishes_a_table_artifact(config: StoreflowConfig) -> None:
    config.storage.ensure_layout()
    (config.storage.spaces_dir / "found").mkdir()
    run(reconcile)
    with get_client(sync_client=True) as client:
        artifacts = client.read_latest_artifacts()
    table = next(a for a in artifacts if a.key == "storeflow-reconcile")
    assert table.type == "table" and "found" in str(table.data)
