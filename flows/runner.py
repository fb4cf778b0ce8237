"""How the CLI and the demo run a flow: in this process, or as a deployment run.

In-process runs use the embedded default (Prefect's ephemeral server, or the
server PREFECT_API_URL points at) and skip the flow heartbeat, which only
matters to workers and costs every sync flow run about a second at exit.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_SERVER_ANALYTICS_ENABLED,
    temporary_settings,
)
from prefect.states import State
from pydantic import BaseModel

from models.errors import StoreflowError


class SubmitError(StoreflowError):
    pass


@dataclass(frozen=True)
class RunOutcome:
    """A finished (or submitted) flow run, as the CLI reports it."""

    flow_run_id: str | None
    flow_run_name: str | None
    state_type: str
    state_name: str
    message: str | None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.state_type in ("COMPLETED", "SCHEDULED", "PENDING")

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow_run_id": self.flow_run_id,
            "flow_run_name": self.flow_run_name,
            "state": self.state_name,
            "state_type": self.state_type,
            "message": self.message,
            "result": self.result,
        }


@contextmanager
def in_process_runtime() -> Iterator[None]:
    with temporary_settings(
        {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None, PREFECT_SERVER_ANALYTICS_ENABLED: False}
    ):
        yield


def outcome_of(state: State[Any], flow_run_name: str | None = None) -> RunOutcome:
    result = state.result(raise_on_failure=False) if state.is_completed() else None
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return RunOutcome(
        flow_run_id=str(state.state_details.flow_run_id)
        if state.state_details.flow_run_id
        else None,
        flow_run_name=flow_run_name,
        state_type=state.type.value,
        state_name=state.name or state.type.value.capitalize(),
        message=state.message,
        result=result if not isinstance(result, BaseException) else None,
    )


def run_here(flow: Flow[..., Any], **parameters: Any) -> RunOutcome:
    """Run `flow` in this process and wait for its final state."""
    with in_process_runtime():
        state = cast(State[Any], flow(**parameters, return_state=True))
    return outcome_of(state, _run_name(state))


def _run_name(state: State[Any]) -> str | None:
    run_id = state.state_details.flow_run_id
    if run_id is None:
        return None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).name


def submit(flow: Flow[..., Any], parameters: dict[str, Any]) -> RunOutcome:
    """Create a run of the flow's deployment (named like the flow) and return at once."""
    if not PREFECT_API_URL.value():
        raise SubmitError("--submit needs a Prefect server: set PREFECT_API_URL")
    name = f"{flow.name}/{flow.name}"
    try:
        run = run_deployment(name=name, parameters=parameters, timeout=0)
    except Exception as exc:
        raise SubmitError(f"cannot create a run of deployment {name!r}: {exc}") from exc
    run = cast(FlowRun, run)  # run_deployment is sync-compatible: here, it ran synchronously
    state = run.state
    return RunOutcome(
        flow_run_id=str(run.id),
        flow_run_name=run.name,
        state_type=state.type.value if state else "SCHEDULED",
        state_name=(state.name if state else None) or "Scheduled",
        message=f"submitted to deployment {name}",
    )
