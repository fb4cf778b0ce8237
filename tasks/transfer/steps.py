"""The transfer flow's steps, as Prefect tasks:

    pre-hooks -> pre -> perform -> post -> after-task -> post-hooks

- `pre` plans (file watch, listing, conditionals, FILTER callbacks), then runs
  BEFORE_TASK_EXECUTED with the previous execution's Progress flags; a veto ends the
  run `Failed(name="Vetoed")` before anything is copied.
- `perform` delivers in batches on a bounded thread pool (one Prefect task for the
  whole copy, not one per file), calls AFTER_RESULT_RECEIVED per file and keeps a
  progress artifact current.
- `post` renames into place, writes flags, runs the post-copy action, and publishes a
  table artifact summarising the run.
- `after-task` runs AFTER_TASK_EXECUTED with the outcome (also after a failure).

Each step adds its seed Progress flags (INIT_*, PROCESS_*, FINAL_*, HAS_ERROR,
STOPPED) to the execution record, so the next run's BEFORE_TASK_EXECUTED sees how far
this one got, even if it was killed.
"""

from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import opaque

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.models.errors import Refused, StoreflowError
from storeflow.models.status import Status
from storeflow.models.transfer import TransferDefinition
from storeflow.sandbox.models import ExecutionResult, Progress, Stage, TaskExecution
from storeflow.tasks.hook_base import ActionResults, HookBase, HookContext, load_drivers
from storeflow.tasks.hooks import run_post_hooks, run_pre_hooks
from storeflow.tasks.transfer import (
    Delivery,
    TransferPlan,
    TransferResult,
    deliver,
    finalize,
    plan_transfer,
)
from storeflow.tasks.transfer.callbacks import BoundCallbacks
from storeflow.tasks.transfer.progress import ProgressReporter, artifact_key

DELIVERED, VETOED, REFUSED, ERRORED = "Delivered", "Vetoed", "Refused", "Errored"

T = TypeVar("T")


def by_ref(value: T) -> T:
    """Pass `value` to a task as it is: Prefect resolves it and records the upstream
    task it came from, but does not walk into it.  A plan holds an entry per file, and
    Prefect visits every element of a task's parameters twice per task (dependency
    tracking, then future resolution): seconds for ten thousand files."""
    return cast(T, opaque(value))


class Vetoed(Refused):
    """A BEFORE_TASK_EXECUTED callback (or a pre hook) said no."""


@dataclass
class TransferRun:
    """Everything the steps of one transfer flow run share."""

    config: StoreflowConfig
    definition: TransferDefinition
    task_id: str
    flow_run_id: str
    callbacks: BoundCallbacks
    max_workers: int = 4
    batch_size: int = 64
    execution_id: int = 0
    previous: executions.ExecutionView | None = None
    flags: Progress = Progress.PROGRESS_UNSPECIFIED
    reporter: ProgressReporter | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"transfer/{self.task_id}"

    def flag(self, flags: Progress) -> None:
        # Not synced at once (one fsync a step): a killed run still leaves its last step
        # on record, and the durable commit of _close syncs them all.
        self.flags |= flags
        with session_scope(self.config.database_url, durable=False) as session:
            executions.add_flags(session, self.execution_id, flags)


# -- the steps ----------------------------------------------------------------------------


def open_execution(run: TransferRun) -> None:
    with session_scope(run.config.database_url, durable=False) as session:
        execution = executions.start(session, run.task_id, run.flow_run_id)
        run.execution_id = execution.id
        run.previous = executions.last_before(session, run.task_id, execution.id)


@task(name="pre", cache_policy=NO_CACHE, task_run_name="{run.label}: pre")
def pre(run: TransferRun) -> TransferPlan | State[Any]:
    """Plan, then ask BEFORE_TASK_EXECUTED; a refusal or veto comes back as a state."""
    logger = get_run_logger()
    run.flag(Progress.PROGRESS_INIT_STARTED)
    bound = run.callbacks
    try:
        plan = plan_transfer(
            run.definition,
            file_filter=bound.file_filter if bound.has(Stage.FILTER) else None,
        )
    except StoreflowError as exc:
        return Failed(name=REFUSED, message=str(exc), data=exc)
    if plan.skipped:
        logger.info("FILTER skipped %d files: %s", len(plan.skipped), ", ".join(plan.skipped))
    last = TaskExecution(progress=run.previous.progress) if run.previous else None
    outcome = bound.callbacks.before_task(last)
    if outcome.vetoed:
        who = outcome.failed_callback or (outcome.calls[-1].name if outcome.calls else "?")
        reason = f": {outcome.error}" if outcome.error else ""
        veto = Vetoed(f"BEFORE_TASK_EXECUTED callback {who} vetoed the transfer{reason}")
        return Failed(name=VETOED, message=str(veto), data=veto)
    run.flag(Progress.PROGRESS_INIT_DONE)
    logger.info("%s: %d files, %d bytes planned", run.label, len(plan.files), plan.total_bytes)
    return plan


@task(name="perform", cache_policy=NO_CACHE, task_run_name="{run.label}: perform")
def perform(run: TransferRun, plan: TransferPlan) -> Delivery:
    run.flag(Progress.PROGRESS_PROCESS_STARTED)
    reporter = run.reporter = ProgressReporter(run.task_id)
    reporter.start(len(plan.files), plan.total_bytes * len(plan.definition.destination))
    bound = run.callbacks
    try:
        delivery = deliver(
            plan,
            progress=reporter,
            after_result=bound.after_result,
            max_workers=run.max_workers,
            batch_size=run.batch_size,
        )
    finally:
        # The last figures go out while `post` works; run_steps settles them.
        reporter.finish(wait=False)
    run.flag(Progress.PROGRESS_PROCESS_DONE)
    return delivery


@task(name="post", cache_policy=NO_CACHE, task_run_name="{run.label}: post")
def post(run: TransferRun, plan: TransferPlan, delivery: Delivery) -> TransferResult:
    run.flag(Progress.PROGRESS_FINAL_STARTED)
    result = finalize(plan)
    run.flag(Progress.PROGRESS_FINAL_DONE)
    run.summary = {
        "files": len(result.files),
        "bytes": result.bytes,
        "skipped": len(result.skipped),
        "destinations": len(result.destinations),
        "seconds": round(delivery.seconds, 3),
        "post_copy": result.post_copy or "-",
        **run.callbacks.summary(),
    }
    create_table_artifact(
        table=[{"item": key, "value": str(value)} for key, value in run.summary.items()],
        key=f"{artifact_key(run.task_id)}-summary",
        description=f"{run.label}: delivered",
    )
    return result


def tell_after_task(run: TransferRun, outcome: ExecutionResult) -> None:
    """AFTER_TASK_EXECUTED, as a step of its own only when a callback listens: an empty
    task run would cost every transfer a round of Prefect bookkeeping for nothing."""
    if run.callbacks.has(Stage.AFTER_TASK_EXECUTED):
        after_task(by_ref(run), outcome)


@task(name="after-task", cache_policy=NO_CACHE, task_run_name="{run.label}: after-task")
def after_task(run: TransferRun, outcome: ExecutionResult) -> None:
    """AFTER_TASK_EXECUTED: told, not asked; a failing callback is logged, not fatal."""
    told = run.callbacks.callbacks.after_task(outcome)
    if told.failed:
        get_run_logger().warning(
            "AFTER_TASK_EXECUTED callback %s failed: %s", told.failed_callback, told.error
        )


# -- the skeleton -------------------------------------------------------------------------


def run_steps(run: TransferRun) -> State[Any]:
    """Run one transfer through every step; return the flow run's final state."""
    open_execution(run)
    try:
        drivers = load_drivers(run.config.hooks, run.config.hooks.hook_drivers)
    except StoreflowError as exc:  # a misspelt driver: refused before anything moved
        return _close(run, REFUSED, f"{run.label}: {exc}", Progress.PROGRESS_STOPPED)
    context = HookContext(
        kind="transfer",
        action="run",
        resource_name=run.task_id,
        flow_run_id=run.flow_run_id,
        flow_run_name=run.label,
        parameters={"task_id": run.task_id, "definition": run.definition.model_dump(mode="json")},
    )
    pre_data: list[Any] = []
    if drivers:
        hooks = run_pre_hooks(run.label, drivers, context, "transfer", return_state=True)
        answer = hooks.result(raise_on_failure=False)
        if isinstance(answer, BaseException):
            return _close(run, REFUSED, f"{run.label}: {answer}", Progress.PROGRESS_STOPPED)
        assert isinstance(answer, list)
        pre_data = answer
    try:
        state = _pre_perform_post(run)
    finally:
        if run.reporter is not None:
            run.reporter.settle()  # the progress artifact's last figures, before the end
    if drivers:
        state = _post_hooks(run, drivers, context, pre_data, state)
    return state


def _pre_perform_post(run: TransferRun) -> State[Any]:
    logger = get_run_logger()
    planned = pre(by_ref(run), return_state=True).result(raise_on_failure=False)
    if isinstance(planned, Vetoed):
        return _close(run, VETOED, f"{run.label}: {planned}", Progress.PROGRESS_STOPPED)
    if isinstance(planned, BaseException):
        # Refused: the definition or the places it names were found unsafe or incomplete
        # before anything was copied; anything else is an unexpected failure.
        name = REFUSED if isinstance(planned, StoreflowError) else ERRORED
        _close(run, name, str(planned), Progress.PROGRESS_HAS_ERROR)
        tell_after_task(run, ExecutionResult(status="ERROR", error=str(planned)))
        return Failed(name=name, message=f"{run.label}: {planned}")
    assert isinstance(planned, TransferPlan)
    try:
        delivery = perform(by_ref(run), by_ref(planned))
        result = post(by_ref(run), by_ref(planned), by_ref(delivery))
    except Exception as exc:
        logger.error("%s failed: %s", run.label, exc)
        _close(run, ERRORED, str(exc), Progress.PROGRESS_HAS_ERROR)
        tell_after_task(run, ExecutionResult(status="ERROR", error=str(exc)))
        return Failed(name=ERRORED, message=f"{run.label}: {exc}")
    message = f"{run.label}: {len(result.files)} files, {result.bytes} bytes delivered" + (
        f", {len(result.skipped)} skipped" if result.skipped else ""
    )
    _close(run, DELIVERED, message, Progress.PROGRESS_UNSPECIFIED, result)
    tell_after_task(run, ExecutionResult(status="SUCCESS", details=dict(run.summary)))
    return Completed(name=DELIVERED, message=message, data=_result_data(run, result))


def _result_data(run: TransferRun, result: TransferResult) -> dict[str, Any]:
    return {
        "task_id": run.task_id,
        "execution_id": run.execution_id,
        "files": list(result.files),
        "bytes": result.bytes,
        "skipped": list(result.skipped),
        "watched": list(result.watched),
        "destinations": list(result.destinations),
        "post_copy": result.post_copy,
        "progress": int(run.flags),
    }


def _close(
    run: TransferRun,
    outcome: str,
    message: str,
    flags: Progress,
    result: TransferResult | None = None,
) -> State[Any]:
    run.flags |= flags
    with session_scope(run.config.database_url) as session:
        executions.finish(
            session,
            run.execution_id,
            outcome,
            flags=flags,
            message=message,
            files=len(result.files) if result else 0,
            nbytes=result.bytes if result else 0,
            skipped=len(result.skipped) if result else 0,
            file_metadata=run.callbacks.stored,
        )
    return Failed(name=outcome, message=message)


def _post_hooks(
    run: TransferRun,
    drivers: list[HookBase],
    context: HookContext,
    pre_data: list[Any],
    state: State[Any],
) -> State[Any]:
    """Hook drivers see a transfer as ACTIVE (delivered) or ERRORED; they may overrule it."""
    ok = state.is_completed()
    data = state.result(raise_on_failure=False) if ok else None
    before = ActionResults(
        status=Status.ACTIVE if ok else Status.ERRORED,
        resource=data if isinstance(data, dict) else None,
        error=None if ok else state.message,
        refused=state.name in (VETOED, REFUSED),
    )
    try:
        after = run_post_hooks(run.label, drivers, context, "transfer", pre_data, before)
    except Exception as exc:
        return Failed(name=ERRORED, message=f"{run.label}: post hook failed: {exc}")
    if ok and not after.succeeded:
        reason = after.error or after.message or "a post hook marked it failed"
        return Failed(name=ERRORED, message=f"{run.label}: {reason}")
    return state
