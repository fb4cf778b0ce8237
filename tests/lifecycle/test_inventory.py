"""What the Prefect UI learns: inventories per kind, the resource on each run, events
for automations, and reconcile's and the periodic hooks' summaries."""

import json
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.periodic_hooks import periodic_hooks
from storeflow.flows.reconcile import reconcile
from storeflow.flows.spaces import space_create, space_update
from storeflow.models.schemas import SpaceSpec, SpaceUpdate
from storeflow.tasks import inventory
from tests.lifecycle.conftest import run


def latest_table(key: str) -> list[dict[str, Any]]:
    return latest_artifact(key)[0]


def latest_artifact(key: str) -> tuple[list[dict[str, Any]], str]:
    """The rows and the description of the latest version of the artifact `key`."""
    with get_client(sync_client=True) as client:
        found = client.read_latest_artifacts(
            artifact_filter=ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    data = found[0].data
    table = json.loads(data) if isinstance(data, str) else data
    assert isinstance(table, list)
    return table, found[0].description or ""


def run_tables(flow_run_id: UUID) -> list[Any]:
    with get_client(sync_client=True) as client:
        return [
            a
            for a in client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if a.type == "table"
        ]


def events_named(name: str, since: float, seconds: float = 30) -> list[Any]:
    """The events of that name emitted since `since` (they arrive asynchronously)."""
    deadline = time.monotonic() + seconds
    after = datetime.fromtimestamp(since, UTC)
    while True:
        with get_client(sync_client=True) as client:
            answer = client._client.post(
                "/events/filter",
                json={
                    "filter": {"event": {"name": [name]}, "occurred": {"since": after.isoformat()}}
                },
            )
        events = answer.json().get("events", [])
        if events or time.monotonic() > deadline:
            return list(events)
        time.sleep(0.5)


def test_lifecycle_runs_rewrite_the_inventory_and_show_the_resource(
    config: StoreflowConfig,
) -> None:
    started = time.time()
    created = run(space_create, spec=SpaceSpec(name="inv", quota="1G"))
    assert created.name == "Active"
    assert run(space_update, name="inv", changes=SpaceUpdate(quota="2G")).name == "Active"

    rows = latest_table("storeflow-spaces")
    assert [(r["name"], r["status"], r["quota"]) for r in rows] == [("inv", "ACTIVE", "2G")]
    assert rows[0]["etag"] == "5"
    assert created.state_details.flow_run_id is not None
    tables = run_tables(created.state_details.flow_run_id)
    assert any("as this run left it" in (t.description or "") for t in tables)

    emitted = events_named("storeflow.space.update.active", started)
    assert emitted, "no storeflow.space.update.active event"
    labels = emitted[0]["resource"]
    assert labels["storeflow.kind"] == "space" and labels["storeflow.name"] == "inv"
    assert labels["storeflow.status"] == "ACTIVE" and labels["storeflow.etag"] == "5"


def test_a_large_fleet_s_inventory_holds_the_most_recently_changed(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every lifecycle run writes a version of the inventory, and the server keeps them
    all: past INVENTORY_ROWS resources, the table holds the most recently changed."""
    monkeypatch.setattr(inventory, "INVENTORY_ROWS", 3)
    for name in ("a", "b", "c"):
        assert run(space_create, spec=SpaceSpec(name=name)).name == "Active"
    assert [r["name"] for r in latest_table("storeflow-spaces")] == ["a", "b", "c"]
    assert run(space_create, spec=SpaceSpec(name="d")).name == "Active"
    assert run(space_update, name="a", changes=SpaceUpdate(quota="1G")).name == "Active"

    rows, description = latest_artifact("storeflow-spaces")
    assert [(r["name"], r["quota"]) for r in rows] == [("a", "1G"), ("c", "-"), ("d", "-")]
    assert "3 most recently changed of 4 spaces" in description
    assert "`storeflow space list` lists them all" in description


def test_a_refusal_is_an_event_and_leaves_the_inventory_alone(config: StoreflowConfig) -> None:
    started = time.time()
    assert run(space_create, spec=SpaceSpec(name="calm")).name == "Active"
    refused = run(space_update, name="calm", etag=1, changes=SpaceUpdate(quota="1G"))
    assert refused.name == "Refused"
    assert events_named("storeflow.space.update.refused", started)
    assert latest_table("storeflow-spaces")[0]["etag"] == "3"  # as the create left it


def test_reconcile_sums_up_tells_each_change_and_warns_of_full_spaces(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.time()
    assert run(space_create, spec=SpaceSpec(name="full", quota="1M")).name == "Active"
    (config.storage.spaces_dir / "full" / "big.bin").write_bytes(b"x" * 1000 * 1024)
    (config.storage.spaces_dir / "found").mkdir()

    state = run(reconcile)

    assert state.message == "reconcile: 1 adopted, 1 measured"
    assert {(c.kind, c.name, c.change) for c in state.result()} == {
        ("space", "found", "adopted"),
        ("space", "full", "measured"),
    }
    adopted = events_named("storeflow.reconcile.adopted", started)
    assert adopted and adopted[0]["resource"]["storeflow.name"] == "found"
    warning = events_named("storeflow.space.quota.warning", started)
    assert warning and warning[0]["resource"]["storeflow.name"] == "full"
    assert warning[0]["payload"]["used"] == 1000 * 1024
    assert {r["name"] for r in latest_table("storeflow-spaces")} == {"full", "found"}


def test_periodic_hooks_end_with_a_summary(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(periodic_hooks).message == "periodic hooks: no hook drivers configured"
    monkeypatch.setenv("STOREFLOW_HOOK_DRIVERS", "storeflow.tasks.hook_drivers.audit:AuditHook")
    run(space_create, spec=SpaceSpec(name="seen"))
    state = run(periodic_hooks)
    assert state.result() == 1
    assert state.message == "periodic hooks: AuditHook (1 of 1 drivers) on 1 space"
