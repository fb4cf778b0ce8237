"""A run that ends Refused or Errored for a known reason logs one line, the reason, and
no traceback: read back from Prefect's API as the UI shows it.

Each run is executed as a process worker executes it (`python -m prefect.engine` with
the run's id, in its own process, logging at INFO), against the suite's Prefect."""

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun, Log
from prefect.client.schemas.sorting import LogSort

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.common import ExpectedOutcome
from storeflow.flows.spaces import space_create, space_update
from storeflow.flows.templates import template_create, template_delete
from storeflow.flows.transfers import transfer
from storeflow.models.schemas import SpaceSpec, TemplateSpec
from storeflow.tasks.templates import TemplateInUse
from tests.lifecycle.conftest import read, run
from tests.lifecycle.test_inventory import latest_table, run_tables

ROOT = Path(__file__).resolve().parents[2]
ENGINE_SECONDS = 300
# What Prefect writes when an exception leaves the engine, and what `logger.exception`
# writes when no exception is being handled.
NOISE = ("Traceback", "Engine execution exited with unexpected exception", "NoneType: None")


def run_as_a_worker_does(flow: Flow[..., Any], entrypoint: str, parameters: dict[str, Any]) -> str:
    """Create a run of `flow` and execute it in its own process, the process worker's
    command; returns the run's id once that process has ended (and flushed its logs)."""
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(flow, parameters=parameters)
        api_url = str(client.api_url)
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT__FLOW_RUN_ID": str(flow_run.id),
        "PREFECT__FLOW_ENTRYPOINT": entrypoint,
        "PREFECT_LOGGING_LEVEL": "INFO",  # a worker's default: every line the UI shows
    }
    finished = subprocess.run(
        [sys.executable, "-m", "prefect.engine"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=ENGINE_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    # An expected outcome is not the process's failure: a worker reports it as the state.
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return str(flow_run.id)


def final(flow_run_id: str) -> tuple[FlowRun, list[Log]]:
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
        logs = client.read_logs(
            LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
            sort=LogSort.TIMESTAMP_ASC,
        )
    return flow_run, logs


def assert_one_line_reason(logs: list[Log], reason: str) -> None:
    assert logs, "the run logged nothing"
    messages = [log.message for log in logs]
    for noise in NOISE:
        assert not any(noise in message for message in messages), (noise, "\n---\n".join(messages))
    assert reason in messages[-1], messages


def test_a_refused_run_logs_its_reason_and_no_traceback(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="logged"))
    current = read(config, "space", "logged").etag

    flow_run_id = run_as_a_worker_does(
        space_update,
        "flows/spaces.py:space_update",
        {"name": "logged", "etag": current - 1, "changes": {"quota": "2G"}},
    )

    flow_run, logs = final(flow_run_id)
    assert flow_run.state is not None and flow_run.state.name == "Refused"
    assert_one_line_reason(logs, f"etag {current - 1} given, now {current}")
    assert read(config, "space", "logged").etag == current


def test_an_errored_run_with_a_known_cause_logs_it_and_no_traceback(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="in-use", source=sample_tree))
    run(space_create, spec=SpaceSpec(name="user", template="in-use"))
    etag = read(config, "template", "in-use").etag

    flow_run_id = run_as_a_worker_does(
        template_delete, "flows/templates.py:template_delete", {"name": "in-use", "etag": etag}
    )

    flow_run, logs = final(flow_run_id)
    assert flow_run.state is not None and flow_run.state.name == "Errored"
    assert_one_line_reason(logs, "installed in user")


def test_an_unexpected_crash_keeps_its_traceback() -> None:
    """The filter quiets known causes only: any other exception in a step is a crash."""
    quiet = ExpectedOutcome()

    def failed_with(error: BaseException | None) -> logging.LogRecord:
        try:
            raise error if error else LookupError("unused")
        except BaseException:
            exc_info = sys.exc_info() if error else (None, None, None)
        kind = "exception" if error else "state"
        return logging.LogRecord(
            "prefect.task_runs",
            logging.ERROR,
            __file__,
            1,
            f"Task run failed with {kind}: {error!r}",
            None,
            exc_info,
        )

    assert quiet.filter(failed_with(KeyError("surprise")))
    assert quiet.filter(failed_with(OSError(5, "Input/output error")))
    assert not quiet.filter(failed_with(TemplateInUse("template 't' is installed in s")))
    assert not quiet.filter(failed_with(None))  # a step that answered with a Failed state


def test_a_refused_transfer_logs_its_reason_and_no_traceback(tmp_path: Path) -> None:
    """Not only lifecycle flows: a transfer (whose module declares no lifecycle flow)
    refused for a known reason is as quiet."""
    missing = tmp_path / "no-such-config-dir"

    flow_run_id = run_as_a_worker_does(
        transfer, "flows/transfers.py:transfer", {"config_dir": str(missing), "name": "nightly"}
    )

    flow_run, logs = final(flow_run_id)
    assert flow_run.state is not None and flow_run.state.name == "Refused"
    assert_one_line_reason(logs, "transfer/nightly")


def test_a_completed_run_has_its_artifacts_and_a_quiet_log(config: StoreflowConfig) -> None:
    """The announce's artifacts are written while Prefect records the final state and
    waited for by the flow's final-state hook: when the worker's process has ended both
    are there (the resource on the run, the inventory under its key), and the engine's
    lines about that hook are not in the run's log."""
    flow_run_id = run_as_a_worker_does(
        space_create, "flows/spaces.py:space_create", {"spec": {"name": "announced"}}
    )

    flow_run, logs = final(flow_run_id)
    assert flow_run.state is not None and flow_run.state.name == "Active"
    messages = [log.message for log in logs]
    assert not any("finish_announce" in message for message in messages), messages
    assert "ACTIVE" in messages[-1], messages
    described = {a.key: a.description for a in run_tables(UUID(flow_run_id))}
    assert set(described) == {None, "storeflow-spaces"}, described
    assert described[None] == "space 'announced' as this run left it"
    assert "announced" in {row["name"] for row in latest_table("storeflow-spaces")}
