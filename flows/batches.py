"""The batch flow: one Open Task Framework batch, its tasks as child flow runs.

Each task of the batch is a child run of this one (the `transfer`, `execution` or
`batch` flow), started as soon as its dependencies allow, several at a time, each with
its `timeout`.  The Prefect UI shows the batch as one run with a child run per task, and
a table artifact with every task's outcome.  A rerun after a failed batch runs only what
did not complete (see tasks/otf/batch.py).  Final state: `Completed` when every task
completed, else `Failed` naming the tasks that failed, timed out or could not run.
"""

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, close_interrupted, note_run_name
from storeflow.flows.executions import execution
from storeflow.flows.transfers import transfer
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.models.errors import StoreflowError
from storeflow.models.names import TaskId, Text
from storeflow.models.otf import (
    AddonExecutionDefinition,
    BatchDefinition,
    ExecutionDefinition,
    parse_task,
)
from storeflow.models.transfer import DefinitionError, TransferDefinition
from storeflow.tasks.lifecycle import current_run_id
from storeflow.tasks.otf.batch import (
    BATCH_COMPLETED,
    BATCH_FAILED,
    Member,
    carry_over,
    load_members,
    member_key,
    previous_statuses,
    run_members,
    verdict,
)
from storeflow.tasks.transfer.progress import artifact_key


def _run_name() -> str:
    return f"batch/{current_flow_run.parameters.get('name') or 'batch'}"


def load_batch(config_dir: str, name: str) -> BatchDefinition:
    from storeflow.tasks.otf.config import load_task

    found = parse_task(load_task(config_dir, name), name)
    if not isinstance(found, BatchDefinition):
        raise DefinitionError(name, [("type", "a batch task is needed here")])
    return found


@flow(
    name="batch",
    flow_run_name=_run_name,
    validate_parameters=True,
    on_crashed=[close_interrupted],
    on_cancellation=[close_interrupted],
)
def batch(
    name: TaskId,
    config_dir: Text,
    definition: BatchDefinition | None = None,
    callbacks_dir: Text | None = None,
    sandbox_policy: Text | None = None,
    config: ConfigName = None,
) -> State[Any]:
    """Run one OTF batch: its tasks as child runs, in parallel where dependencies allow.

    name: the batch's task id (its outcomes are recorded under it: a rerun after a
    failure skips what completed).  config_dir: the OTF config directory on the worker
    where the batch (unless given inline as definition) and its tasks are found.
    callbacks_dir / sandbox_policy: the callbacks every task of the batch runs with.
    config: a saved StoreflowConfig block.
    """
    note_run_name()
    label = f"batch/{name}"
    try:
        found = definition or load_batch(config_dir, name)
        members = load_members(found, config_dir)
    except StoreflowError as exc:
        return Failed(name="Refused", message=f"{label}: {exc}")
    settings = resolve_config(config)
    run_id = current_run_id()
    with session_scope(settings.database_url) as session:
        started = executions.start(session, name, run_id)
        carry_over(members, previous_statuses(session, name, started.id))
    logger = get_run_logger()
    for member in members:
        if member.carried:
            logger.info("%s: task %s completed last time, not run again", label, member.label)
            _record(settings.database_url, name, run_id, member)
    shared = {"callbacks_dir": callbacks_dir, "sandbox_policy": sandbox_policy, "config": config}

    def launch(member: Member) -> State[Any]:
        return run_member(member, config_dir, shared)

    def record(member: Member) -> None:
        logger.info("%s: task %s ended %s: %s", label, member.label, member.status, member.message)
        _record(settings.database_url, name, run_id, member)

    run_members(members, launch, record)
    ok, account = verdict(members)
    create_table_artifact(
        table=[
            {
                "order_id": m.order_id,
                "task": m.spec.task_id,
                "outcome": m.status + (" (previous run)" if m.carried else ""),
                "message": m.message,
            }
            for m in members
        ],
        key=f"{artifact_key(name)}-batch",
        description=f"{label}: {account}",
    )
    with session_scope(settings.database_url) as session:
        executions.finish(
            session, started.id, BATCH_COMPLETED if ok else BATCH_FAILED, message=account
        )
    if ok:
        return Completed(message=f"{label}: {account}")
    return Failed(message=f"{label}: {account}")


def run_member(member: Member, config_dir: str, shared: dict[str, Any]) -> State[Any]:
    """One task of a batch as a child flow run, to its final state, within its timeout."""
    timeout = member.spec.timeout
    task_id = member.spec.task_id
    definition = member.definition
    if isinstance(definition, ExecutionDefinition | AddonExecutionDefinition):
        # The command's process group is killed at the timeout: Prefect's own timeout
        # cannot interrupt a thread blocked waiting for a child process.
        return execution(
            definition=definition, name=task_id, timeout=timeout, return_state=True, **shared
        )
    if isinstance(definition, TransferDefinition):
        timed = transfer.with_options(timeout_seconds=timeout)
        return timed(definition=definition, name=task_id, return_state=True, **shared)
    timed_batch = batch.with_options(timeout_seconds=timeout)
    return timed_batch(
        name=task_id, config_dir=config_dir, definition=definition, return_state=True, **shared
    )


def _record(database_url: str, batch_id: str, run_id: str, member: Member) -> None:
    with session_scope(database_url) as session:
        row = executions.start(session, member_key(batch_id, member.order_id), run_id)
        executions.finish(
            session, row.id, member.status, message=f"{member.spec.task_id}: {member.message}"
        )


def config_dir_of(path: Path) -> str:
    """A batch given as a file finds its tasks beside it (OTF needs -c; this is the
    directory the file is in)."""
    return str(path.absolute().parent)
