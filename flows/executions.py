"""The execution flow: one Open Task Framework execution task (a local command).

Runs from the CLI (`storeflow transfer run -t TASK_ID -c DIR` when the task's type is
`execution`), as a batch's child run, or as the `execution` deployment.  The final state
is named after the outcome: `Completed(name="Executed")` (exit status 0),
`Failed(name="Errored")` (another status, named in the message),
`Failed(name="TimedOut")`, `Failed(name="Vetoed")` or `Failed(name="Refused")`.
"""

from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Failed, State
from pydantic import Field

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, close_interrupted, note_run_name
from storeflow.models.errors import StoreflowError
from storeflow.models.names import TaskId, Text
from storeflow.models.otf import AddonExecutionDefinition, ExecutionDefinition
from storeflow.models.transfer import DefinitionError
from storeflow.sandbox.definitions import CallbackDefinition, CallbackError, discover
from storeflow.sandbox.isolation import IsolationUnavailable
from storeflow.sandbox.stages import CallbackSet
from storeflow.tasks.lifecycle import current_run_id
from storeflow.tasks.otf.execution import ExecutionRun, run_execution
from storeflow.tasks.transfer.preparation import sandbox_settings


def load_execution(
    config_dir: str | None, name: str | None
) -> ExecutionDefinition | AddonExecutionDefinition:
    """The execution task `name` of an OTF config directory, rendered and validated."""
    from storeflow.models.otf import parse_task
    from storeflow.tasks.otf.config import load_task

    if not name or not config_dir:
        raise DefinitionError("(parameters)", [("name", "config_dir needs the task id as name")])
    found = parse_task(load_task(config_dir, name), name)
    if not isinstance(found, ExecutionDefinition | AddonExecutionDefinition):
        raise DefinitionError(name, [("type", "an execution task is needed here")])
    return found


def _run_name() -> str:
    params = current_flow_run.parameters
    return f"execution/{params.get('name') or 'execution'}"


@flow(
    name="execution",
    flow_run_name=_run_name,
    validate_parameters=True,
    on_crashed=[close_interrupted],
    on_cancellation=[close_interrupted],
)
def execution(
    definition: ExecutionDefinition | AddonExecutionDefinition | None = None,
    name: TaskId | None = None,
    config_dir: Text | None = None,
    timeout: Annotated[float | None, Field(gt=0, le=7 * 86400)] = None,
    callbacks: list[CallbackDefinition] | None = None,
    callbacks_dir: Text | None = None,
    sandbox_policy: Text | None = None,
    config: ConfigName = None,
) -> State[Any]:
    """Run one OTF execution task: its command by /bin/sh in its directory.

    definition: the OTF object inline; or config_dir: an OTF config directory on the
    worker, whose task `name` is rendered as OTF's `task-run -t NAME -c DIR` does.
    name: the task's id (executions are recorded under it).  timeout: seconds before
    the command and everything it started are killed (empty: no limit).
    callbacks / callbacks_dir / sandbox_policy: BEFORE/AFTER_TASK_EXECUTED callbacks,
    as for transfers.  config: a saved StoreflowConfig block.
    """
    note_run_name()
    if (definition is None) == (config_dir is None):
        return Failed(name="Refused", message="execution: give definition, or name and config_dir")
    if definition is None:
        try:
            definition = load_execution(config_dir, name)
        except StoreflowError as exc:
            return Failed(name="Refused", message=f"execution/{name}: {exc}")
    task_id = name or "execution"
    settings = sandbox_settings(sandbox_policy, callbacks_dir)
    found = discover(settings) if (sandbox_policy or callbacks_dir) else []
    try:
        cbs = CallbackSet([*found, *(callbacks or [])], task_id=task_id, policy=settings)
    except (IsolationUnavailable, CallbackError) as exc:
        return Failed(name="Refused", message=f"execution/{task_id}: {exc}")
    with cbs:
        run = ExecutionRun(
            config=resolve_config(config),
            definition=definition,
            task_id=task_id,
            flow_run_id=current_run_id(),
            callbacks=cbs,
            timeout=timeout,
        )
        return run_execution(run)
