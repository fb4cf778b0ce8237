"""A lifecycle run cancelled for real (`Cancelling` set through the Prefect API while it
works) ends Cancelled, and the resource it held is ERRORED and free at once: the
`on_cancellation` hook (`flows/common.py:release_interrupted`), no lease to wait for.

The run is picked up by a Prefect Runner (what `flow.serve()` and the process worker run
on) in this process, executes in a subprocess of its own, and stalls in `perform` with
the space held; the Runner sees the cancellation, stops the subprocess and runs the
flow's on_cancellation hooks.
"""

import asyncio
import contextvars
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.runner import Runner
from prefect.states import Cancelling, State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.common import lifecycle_flow
from storeflow.flows.spaces import space_create, space_update
from storeflow.models.names import ResourceName
from storeflow.models.schemas import ResourceView, SpaceSpec, SpaceUpdate
from storeflow.models.status import Status
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.spaces import SpaceUpdater
from tests.lifecycle.conftest import read, run

MARKER_ENV = "STOREFLOW_TEST_STALL_MARKER"


class StallingUpdater(SpaceUpdater):
    """A space update whose perform stops, with the space held, until it is cancelled."""

    def perform(self, resource: ResourceView) -> Status:
        Path(os.environ[MARKER_ENV]).write_text(resource.lock_owner or "")
        time.sleep(600)
        return super().perform(resource)


@lifecycle_flow("space-update", "space-update/{name}")
def stalling_space_update(name: ResourceName, quota: str) -> Any:
    """space-update, stalled in perform (the same skeleton and hooks as the real one).

    Returns Any, not State[Any]: the flow is pickled to the run's subprocess, and pydantic
    names the class State[Any] after whichever module first used it (in pytest, a conftest
    the subprocess has not built it in)."""
    changes = SpaceUpdate(quota=quota)
    return run_operation(StallingUpdater(resolve_config(None), name, None, changes))


class ServedFlow:
    """A Runner serving one flow from a thread of this process, stopped by the test."""

    def __init__(self) -> None:
        self.deployment_id: UUID | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner = Runner(name=f"cancel-test-{uuid4().hex[:8]}", query_seconds=1, limit=None)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        # The thread sees this one's Prefect settings context (the suite's temporary ones).
        context = contextvars.copy_context()
        self.thread = threading.Thread(
            target=lambda: context.run(self._main), name="runner", daemon=True
        )

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # told to the test through `error`
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.deployment_id = await self.runner.aadd_flow(
            stalling_space_update, name=f"cancel-{uuid4().hex[:8]}"
        )
        self.ready.set()
        await self.runner.start()

    def stop(self) -> None:
        if self.loop is not None and self.runner.started:
            asyncio.run_coroutine_threadsafe(self.runner.astop(), self.loop).result(timeout=60)
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the Runner did not stop"


@pytest.fixture
def served(config: StoreflowConfig) -> Iterator[ServedFlow]:
    # The space first: its run starts this process's Prefect server, which the Runner
    # then shares (a Runner sees cancellations through the server it talks to).
    assert run(space_create, spec=SpaceSpec(name="cancelme", quota="1M")).name == "Active"
    served = ServedFlow()
    served.thread.start()
    assert served.ready.wait(timeout=120), "the Runner never registered its deployment"
    assert served.error is None, served.error
    try:
        yield served
    finally:
        served.stop()


def wait_for(check: Any, what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.2)


def flow_run_state(run_id: UUID) -> State[Any]:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    assert state is not None
    return state


def test_a_cancelled_run_ends_cancelled_and_leaves_the_space_errored_and_free(
    config: StoreflowConfig,
    served: ServedFlow,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = read(config, "space", "cancelme")
    marker = tmp_path / "in-perform"
    monkeypatch.setenv(MARKER_ENV, str(marker))  # the run's subprocess inherits it
    assert served.deployment_id is not None
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run_from_deployment(
            served.deployment_id, parameters={"name": "cancelme", "quota": "2M"}
        )

    wait_for(marker.exists, "the run reached perform")
    held = read(config, "space", "cancelme")
    assert held.status is Status.INPROGRESS and held.lock_owner == str(flow_run.id)
    assert marker.read_text() == str(flow_run.id)

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.id, Cancelling(message="cancelled by the test"))
    wait_for(lambda: flow_run_state(flow_run.id).is_final(), "the run ended")

    assert flow_run_state(flow_run.id).is_cancelled(), flow_run_state(flow_run.id)
    wait_for(lambda: read(config, "space", "cancelme").lock_owner is None, "the space freed")
    after = read(config, "space", "cancelme")
    assert after.status is Status.ERRORED
    assert after.status_message is not None
    assert after.status_message.startswith("flow run space-update/cancelme ended CANCEL")
    assert after.spec["quota"] == before.spec["quota"]  # the update never committed
    again = run(space_update, name="cancelme", etag=after.etag, changes=SpaceUpdate(quota="2M"))
    assert again.name == "Active", again.message
    assert read(config, "space", "cancelme").spec["quota"] == 2 * 1024**2
