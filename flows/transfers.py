"""The transfer flow: one Open Task Framework transfer definition, run with callbacks.

Runs from the CLI (`storeflow transfer run DEFINITION`) or as the `transfer`
deployment with parameters from the Prefect API or UI.  The final state is named after
the outcome: `Completed(name="Delivered")`, `Failed(name="Vetoed")`,
`Failed(name="Refused")` (unsafe or incomplete, nothing copied) or
`Failed(name="Errored")`.
"""

from pathlib import Path
from typing import Annotated, Any

from prefect import Flow, flow
from prefect.client.schemas.objects import FlowRun
from prefect.logging import get_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Failed, State
from pydantic import Field

from storeflow.blocks.config import resolve_config
from storeflow.blocks.sandbox import SandboxPolicy
from storeflow.flows.common import ConfigName, note_run_name
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.models.errors import StoreflowError
from storeflow.models.names import TaskId, Text
from storeflow.models.transfer import DefinitionError, TransferDefinition, parse_definition
from storeflow.sandbox.definitions import CallbackDefinition, CallbackError, discover
from storeflow.sandbox.isolation import IsolationUnavailable
from storeflow.sandbox.settings import SandboxSettings, as_settings
from storeflow.sandbox.stages import CallbackSet
from storeflow.tasks.lifecycle import current_run_id
from storeflow.tasks.transfer.callbacks import BoundCallbacks
from storeflow.tasks.transfer.steps import TransferRun, run_steps


def task_id_of(definition: Any, name: str | None) -> str:
    """The transfer task's identity: its name, else its source directory."""
    if name:
        return name
    if isinstance(definition, TransferDefinition):
        return definition.source.directory
    if isinstance(definition, dict):
        return str(definition.get("source", {}).get("directory", "transfer"))
    return "transfer"


def load_from_config_dir(config_dir: str | None, name: str | None) -> TransferDefinition:
    """The transfer task `name` of an OTF config directory, rendered and validated."""
    from storeflow.tasks.otf.config import load_task

    if not name or not config_dir:
        raise DefinitionError("(parameters)", [("name", "config_dir needs the task id as name")])
    return parse_definition(load_task(config_dir, name), name)


def _run_name() -> str:
    params = current_flow_run.parameters
    return f"transfer/{task_id_of(params.get('definition'), params.get('name'))}"


def close_interrupted(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A crashed or cancelled run's execution says so (HAS_ERROR|STOPPED) for the next one."""
    config = resolve_config(flow_run.parameters.get("config"))
    with session_scope(config.database_url) as session:
        closed = executions.finish_unfinished(
            session,
            str(flow_run.id),
            state.type.value.capitalize(),
            f"flow run {flow_run.name} ended {state.type.value}",
        )
    if closed:
        get_logger("storeflow").warning("transfer run %s ended %s", flow_run.name, state.type.value)


def sandbox_settings(policy: str | None, callbacks_dir: str | None) -> SandboxSettings:
    """The policy block's settings (defaults without one); `callbacks_dir` replaces its
    hook directories for this run."""
    settings = as_settings(SandboxPolicy.load(policy) if policy else None)
    if callbacks_dir:
        root = Path(callbacks_dir).absolute()
        settings = settings.model_copy(
            update={"python_hooks_dir": root, "javascript_hooks_dir": root}
        )
    return settings


@flow(
    name="transfer",
    flow_run_name=_run_name,
    validate_parameters=True,
    on_crashed=[close_interrupted],
    on_cancellation=[close_interrupted],
)
def transfer(
    definition: TransferDefinition | None = None,
    name: TaskId | None = None,
    config_dir: Text | None = None,
    callbacks: list[CallbackDefinition] | None = None,
    callbacks_dir: Text | None = None,
    sandbox_policy: Text | None = None,
    config: ConfigName = None,
    max_workers: Annotated[int, Field(ge=1, le=64)] = 4,
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 64,
) -> State[Any]:
    """Run one OTF transfer definition with its callbacks.

    definition: the OTF object inline; or config_dir: an OTF config directory on the
    worker, whose task `name` (`name.json` or `name.json.j2`) is rendered with its
    variables and lookups as OTF's `task-run -t NAME -c DIR` does.
    name: the transfer task's id (callbacks' `req.id`; executions are recorded under it);
    defaults to the source directory.  callbacks: inline callback definitions.
    callbacks_dir: a hook directory laid out `<stage>/<name>.py|.js`.  sandbox_policy:
    a saved SandboxPolicy block (its hook directories are searched too).  config: a
    saved StoreflowConfig block.
    """
    note_run_name()  # run_here reports the name without reading the run back
    if (definition is None) == (config_dir is None):
        return Failed(name="Refused", message="transfer: give definition, or name and config_dir")
    if definition is None:
        try:
            definition = load_from_config_dir(config_dir, name)
        except StoreflowError as exc:
            return Failed(name="Refused", message=f"transfer/{name}: {exc}")
    task_id = task_id_of(definition, name)
    settings = sandbox_settings(sandbox_policy, callbacks_dir)
    found = discover(settings) if (sandbox_policy or callbacks_dir) else []
    try:
        cbs = CallbackSet([*found, *(callbacks or [])], task_id=task_id, policy=settings)
    except (IsolationUnavailable, CallbackError) as exc:
        return Failed(name="Refused", message=f"transfer/{task_id}: {exc}")
    with cbs:
        run = TransferRun(
            config=resolve_config(config),
            definition=definition,
            task_id=task_id,
            flow_run_id=current_run_id(),
            callbacks=BoundCallbacks(cbs, definition),
            max_workers=max_workers,
            batch_size=batch_size,
        )
        return run_steps(run)
