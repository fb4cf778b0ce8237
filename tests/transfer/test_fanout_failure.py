"""The parent's side of a fan-out (tasks/transfer/fanout.py) on a real Prefect API, its
child runs played by this test instead of workers: one child delivers its slice and
completes, one delivers and then fails, one never starts.  The parent cancels the one
left, removes every temporary file of the plan (those of the child that completed too)
and fails: nothing is under a final name, nothing is left behind."""

from __future__ import annotations

import contextvars
import os
import threading
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import Completed, Failed, State

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import Delivery, plan_transfer
from storeflow.tasks.transfer.engine import open_handlers
from storeflow.tasks.transfer.fanout import (
    FanOut,
    FanOutFailed,
    SliceFile,
    deliver_fanned_out,
    deliver_slice,
)
from storeflow.tasks.transfer.names import is_temp_name
from tests.transfer.conftest import local_def

WAIT = 120.0


def children(deployment_id: Any, count: int) -> list[FlowRun]:
    """The child runs the parent made, in slice order, once all `count` exist."""
    deadline = time.monotonic() + WAIT
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )
            if len(runs) == count:
                return sorted(runs, key=lambda r: int(r.parameters["part"]))
            time.sleep(0.2)
    raise TimeoutError(f"{count} child runs not made within {WAIT}s")


def test_a_failed_child_cancels_the_rest_and_every_temporary_file_goes(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for i in range(9):
        (src / f"f{i}.bin").write_bytes(os.urandom(1000 * (i + 1)))
    definition = parse_definition(local_def(src, out), "t")
    plan = plan_transfer(definition)
    name = f"test-{uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        deployment_id = client.create_deployment(
            client.create_flow_from_name("transfer-batch"), name
        )
    fan = FanOut(parts=3, deployment=f"transfer-batch/{name}", wait_seconds=WAIT)

    @task
    def perform() -> Delivery:
        with open_handlers(definition) as handlers:
            return deliver_fanned_out(plan, fan, label="transfer/t", metadata={}, handlers=handlers)

    @flow
    def parent() -> State[Any]:
        return perform(return_state=True)

    ended: list[State[Any]] = []
    context = contextvars.copy_context()
    thread = threading.Thread(target=lambda: ended.append(context.run(parent, return_state=True)))
    thread.start()
    try:
        made = children(deployment_id, 3)
        outcomes: list[State[Any]] = [Completed(), Failed(message="disk full")]
        with get_client(sync_client=True) as client:
            for run, state in zip(made[:2], outcomes, strict=True):
                files = [SliceFile.model_validate(f) for f in run.parameters["files"]]
                deliver_slice(definition, files, after_results=None, max_workers=1, batch_size=8)
                client.set_flow_run_state(run.id, state, force=True)
            written = sorted(p.name for p in out.iterdir())
    finally:
        thread.join(WAIT)
    assert not thread.is_alive()
    assert written and all(is_temp_name(n) for n in written)  # two slices under temp names

    [state] = ended
    assert state.is_failed()
    with pytest.raises(FanOutFailed, match=r"batch 2/3 Failed.*disk full"):
        state.result()
    assert list(out.iterdir()) == []  # nothing final, no temporary file
    with get_client(sync_client=True) as client:
        last = client.read_flow_run(made[2].id)
    assert last.state_type is StateType.CANCELLED  # never started, and never will
