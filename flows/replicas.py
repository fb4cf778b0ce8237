"""Replica flows: replica-create, replica-delete, and replica-sync (what the schedule runs)."""

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.flows.scheduled import artifact_key, load_active, record_run
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.models.errors import Refused
from storeflow.models.names import ResourceName, Text
from storeflow.models.replicas import ReplicaSpec, ReplicaUpdate
from storeflow.sandbox.definitions import CallbackError, discover
from storeflow.sandbox.isolation import IsolationUnavailable
from storeflow.sandbox.models import ExecutionResult, Progress, Stage, TaskExecution
from storeflow.sandbox.stages import CallbackSet
from storeflow.tasks import providers, replicas
from storeflow.tasks.lifecycle import current_run_id, run_operation
from storeflow.tasks.replicas import ReplicaBuilder, ReplicaDeleter, ReplicaUpdater
from storeflow.tasks.transfer.preparation import sandbox_settings


@lifecycle_flow("replica-create", "replica-create/{spec.name}")
def replica_create(spec: ReplicaSpec, config: ConfigName = None) -> State[Any]:
    """Declare a replica and create its schedule; refused if it conflicts with another."""
    return run_operation(ReplicaBuilder(resolve_config(config), spec))


@lifecycle_flow("replica-update", "replica-update/{name}")
def replica_update(
    name: ResourceName, changes: ReplicaUpdate, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Change a replica's provider, direction, remote directory or schedule."""
    return run_operation(ReplicaUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("replica-delete", "replica-delete/{name}")
def replica_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a replica and its schedule (the data on both sides stays)."""
    return run_operation(ReplicaDeleter(resolve_config(config), name, etag))


@task(name="perform", cache_policy=NO_CACHE, task_run_name="replica/{spec.name}: perform")
def sync_once(config: StoreflowConfig, spec: ReplicaSpec) -> dict[str, Any]:
    with session_scope(config.database_url) as session:
        _, provider = providers.find(session, spec.provider)
    return replicas.sync(config, spec, provider)


def execution_task_id(name: str) -> str:
    """The transfer task id a replica's syncs are recorded under (executions table)."""
    return f"replica@{name}"


@flow(name=replicas.FLOW, flow_run_name="replica-sync/{name}", validate_parameters=True)
def replica_sync(
    name: ResourceName,
    config: ConfigName = None,
    callbacks_dir: Text | None = None,
    sandbox_policy: Text | None = None,
) -> State[Any]:
    """Sync one replica now: copy what is missing or different; never delete.

    Each sync is an execution of the transfer task `replica@NAME` (the executions table,
    Progress flags as transfers record them).  BEFORE_TASK_EXECUTED callbacks may veto
    the sync (it then ends `Vetoed`, nothing copied); AFTER_TASK_EXECUTED is told how it
    ended.

    Args:
        name: The replica to sync.
        config: The saved StoreflowConfig block this run works with. Empty: the worker's
            environment (STOREFLOW_* variables).
        callbacks_dir: A hook directory laid out `<stage>/<name>.py|.js` whose callbacks
            run as the transfer flow's do.
        sandbox_policy: A saved SandboxPolicy block (its hook directories are searched too).
    """
    cfg = resolve_config(config)
    try:
        resource = load_active(cfg, replicas.KIND, name)
    except Refused as exc:
        return Failed(name="Refused", message=str(exc))
    spec = ReplicaSpec.model_validate(resource.spec)
    task_id = execution_task_id(name)
    settings = sandbox_settings(sandbox_policy, callbacks_dir)
    found = discover(settings) if (sandbox_policy or callbacks_dir) else []
    try:
        cbs = CallbackSet(found, task_id=task_id, policy=settings)
    except (IsolationUnavailable, CallbackError) as exc:
        return Failed(name="Refused", message=f"replica-sync/{name}: {exc}")
    with cbs, session_scope(cfg.database_url) as session:
        started = executions.start(session, task_id, current_run_id())
        previous = executions.last_before(session, task_id, started.id)
    with cbs:
        return _sync(cfg, spec, resource.id, cbs, started.id, previous)


def _sync(
    cfg: StoreflowConfig,
    spec: ReplicaSpec,
    resource_id: int,
    cbs: CallbackSet,
    execution_id: int,
    previous: executions.ExecutionView | None,
) -> State[Any]:
    name = spec.name
    label = f"replica-sync/{name}"

    def close(outcome: str, message: str, flags: Progress, moved: dict[str, Any]) -> None:
        files = sum(len(r["files"]) for r in moved.values())
        nbytes = sum(int(r["bytes"]) for r in moved.values())
        with session_scope(cfg.database_url) as session:
            executions.finish(
                session, execution_id, outcome, flags=flags, message=message,
                files=files, nbytes=nbytes,
            )  # fmt: skip

    def tell(result: ExecutionResult) -> None:
        if any(c.stage == Stage.AFTER_TASK_EXECUTED for c in cbs.callbacks):
            told = cbs.after_task(result)
            if told.failed:
                get_run_logger().warning(
                    "AFTER_TASK_EXECUTED callback %s failed: %s", told.failed_callback, told.error
                )

    flags = Progress.PROGRESS_INIT_STARTED
    if cbs.callbacks:
        last = TaskExecution(progress=previous.progress) if previous else None
        asked = cbs.before_task(last)
        if asked.vetoed:
            who = asked.failed_callback or (asked.calls[-1].name if asked.calls else "?")
            message = f"{label}: BEFORE_TASK_EXECUTED callback {who} vetoed the sync"
            close("Vetoed", message, flags | Progress.PROGRESS_STOPPED, {})
            tell(ExecutionResult(status="STOPPED", error=message))
            return Failed(name="Vetoed", message=message)
    flags |= Progress.PROGRESS_INIT_DONE | Progress.PROGRESS_PROCESS_STARTED
    try:
        moved = sync_once(cfg, spec)
    except Exception as exc:
        get_run_logger().error("replica %s: %s", name, exc)
        message = f"{label}: {exc}"
        close("Errored", message, flags | Progress.PROGRESS_HAS_ERROR, {})
        tell(ExecutionResult(status="ERROR", error=message))
        return Failed(name="Errored", message=message)
    record_run(cfg, replicas.KIND, name, resource_id, moved)
    rows = [
        {"direction": way, "files": len(report["files"]), "bytes": report["bytes"]}
        for way, report in moved.items()
    ]
    create_table_artifact(table=rows, key=artifact_key("replica", name))
    summary = ", ".join(f"{r['direction']} {r['files']} files" for r in rows)
    message = f"{label}: {summary}"
    done = Progress.PROGRESS_PROCESS_DONE | Progress.PROGRESS_FINAL_STARTED
    close("Synced", message, flags | done | Progress.PROGRESS_FINAL_DONE, moved)
    tell(ExecutionResult(status="SUCCESS", details={"summary": summary}))
    return Completed(name="Synced", message=message, data=moved)
