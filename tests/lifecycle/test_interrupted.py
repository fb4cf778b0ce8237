"""A run that crashes mid-perform marks what it held ERRORED (the `on_crashed` hook),
in this process, without waiting for reconcile or a lease to expire."""

from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.spaces import space_create, space_update
from storeflow.models.schemas import SpaceSpec, SpaceUpdate
from storeflow.models.status import Status
from storeflow.tasks.spaces import SpaceUpdater
from tests.lifecycle.conftest import read, run


class Interrupted(BaseException):
    """What the engine cannot turn into a Failed state (like KeyboardInterrupt, SystemExit
    from a signal handler): the flow run crashes."""


def test_a_crash_mid_perform_marks_the_space_errored_and_frees_it(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(space_create, spec=SpaceSpec(name="crashy", quota="1G"))
    before = read(config, "space", "crashy")
    seen: dict[str, Any] = {}

    def crash(self: SpaceUpdater, resource: Any) -> Status:
        held = read(config, "space", "crashy")  # perform runs with the lock held
        seen.update(status=held.status, owner=held.lock_owner)
        raise Interrupted("power cut")

    real_perform = SpaceUpdater.perform
    monkeypatch.setattr(SpaceUpdater, "perform", crash)
    with pytest.raises(Interrupted):
        space_update(name="crashy", changes=SpaceUpdate(quota="2G"))
    assert seen["status"] is Status.INPROGRESS and seen["owner"] is not None

    after = read(config, "space", "crashy")
    assert after.status is Status.ERRORED
    assert after.lock_owner is None  # free for the next run at once
    assert after.etag > before.etag
    assert after.spec["quota"] == before.spec["quota"]  # the update never committed
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(seen["owner"]))  # the lock owner is the run
    assert flow_run.state is not None and flow_run.state.is_crashed()
    assert after.status_message == "flow run space-update/crashy ended CRASHED"

    monkeypatch.setattr(SpaceUpdater, "perform", real_perform)  # not undo(): STOREFLOW_HOME
    again = run(space_update, name="crashy", changes=SpaceUpdate(quota="2G"))
    assert again.name == "Active", again.message
    assert read(config, "space", "crashy").status is Status.ACTIVE
