"""The resource database failing in the middle of an operation: the run ends Errored
with one line naming the database, perform's work is rolled back, and the record is
settled once the lock's lease runs out (no signal death, nothing stuck for good)."""

import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.reconcile import reconcile
from storeflow.flows.spaces import space_create, space_update
from storeflow.models.schemas import ResourceView, SpaceSpec, SpaceUpdate
from storeflow.models.status import Status
from storeflow.tasks.reconcile import INTERRUPTED
from storeflow.tasks.spaces import SpaceUpdater
from tests.lifecycle.conftest import config, read, run

__all__ = ["config"]  # the fixture, shared with the lifecycle tests


def test_database_read_only_before_post(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(space_create, spec=SpaceSpec(name="before")).name == "Active"
    spaces = config.storage.spaces_dir
    database = Path(config.database_url.removeprefix("sqlite:///"))
    original = SpaceUpdater.perform

    def perform_then_lose_the_database(self: SpaceUpdater, resource: ResourceView) -> Status:
        status = original(self, resource)
        # From here on this run can only read the database (as if its disk turned read-only).
        self.config.database.url = SecretStr(f"sqlite:///file:{database}?mode=ro&uri=true")
        return status

    monkeypatch.setattr(SpaceUpdater, "perform", perform_then_lose_the_database)
    monkeypatch.setenv("STOREFLOW_LOCK_LEASE", "1")
    state = run(space_update, name="before", changes=SpaceUpdate(rename="after"))

    assert state.name == "Errored"
    message = state.message or ""
    assert "\n" not in message and "resource database" in message and "read-only" in message
    assert (spaces / "before").is_dir() and not (spaces / "after").exists()  # rolled back

    monkeypatch.setattr(SpaceUpdater, "perform", original)
    time.sleep(1.5)  # the lease the run could not release runs out
    assert ("space", "before", "released") in {
        (c.kind, c.name, c.change) for c in run(reconcile).result()
    }
    settled = read(config, "space", "before")
    assert settled.lock_owner is None and settled.status is Status.ERRORED
    assert settled.status_message == INTERRUPTED
