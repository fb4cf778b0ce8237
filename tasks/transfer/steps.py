"""The transfer flow's steps, as Prefect tasks, in the hooked skeleton (tasks/skeleton.py):

    pre-hooks -> pre -> perform -> post -> after-task -> post-hooks

- `pre` plans (file watch, listing, conditionals, FILTER callbacks), then runs
  BEFORE_TASK_EXECUTED with the previous execution's Progress flags; a veto ends the
  run `Failed(name="Vetoed")` before anything is copied.
- `perform` delivers in batches (one Prefect task for the whole copy, not one per
  file), calls AFTER_RESULT_RECEIVED a batch of files per sandbox round trip and keeps a
  progress artifact current.
- `post` renames into place, writes flags, runs the post-copy action, and publishes a
  table artifact summarising the run.
- `after-task` runs AFTER_TASK_EXECUTED with the outcome (also after a failure).

Each step adds its seed Progress flags (INIT_*, PROCESS_*, FINAL_*, HAS_ERROR,
STOPPED) to the execution record, so the next run's BEFORE_TASK_EXECUTED sees how far
this one got, even if it was killed: one write when a step starts (with what the
previous step finished), one when the run closes.

The source's and destinations' handlers (SMB/NFS connections) are opened once, by
`pre`, kept on the `TransferRun` for `perform` and `post`, and closed when the steps end.

The execution record is opened on a thread of its own while Prefect starts `pre` (in a
fresh process, such as a warm runner's child, that start waits on the server for most of
0.1 s, and a first database connection takes 20-30 ms); `pre` waits for it before its
first write.
"""

import threading
from concurrent.futures import Future
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
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
from storeflow.models.transfer import TransferDefinition, protocol_kind
from storeflow.sandbox.models import ExecutionResult, Progress, Stage, TaskExecution
from storeflow.tasks import inventory
from storeflow.tasks.catalog import register_delivered
from storeflow.tasks.hook_base import ActionResults, HookContext
from storeflow.tasks.skeleton import HookedRun, HookSettings, run_hooked
from storeflow.tasks.transfer import (
    Delivery,
    TransferPlan,
    TransferResult,
    deliver,
    finalize,
    plan_transfer,
)
from storeflow.tasks.transfer.callbacks import BoundCallbacks
from storeflow.tasks.transfer.engine import Handlers, open_handlers
from storeflow.tasks.transfer.fanout import FanOut, FanOutRefused, deliver_fanned_out
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
    #: Copy as child runs (tasks/transfer/fanout.py) instead of here.
    fan_out: FanOut | None = None
    execution_id: int = 0
    previous: executions.ExecutionView | None = None
    flags: Progress = Progress.PROGRESS_UNSPECIFIED
    reporter: ProgressReporter | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    _unwritten: Progress = Progress.PROGRESS_UNSPECIFIED
    #: The run's open handlers (see `handlers`), closed by `close_handlers`.
    _handlers: Handlers | None = None
    _opened: ExitStack = field(default_factory=ExitStack)
    #: The execution record being opened (see `open_execution`).
    _opening: Future[None] | None = None

    def opened(self) -> None:
        """Wait for the execution record; raise what opening it raised."""
        if self._opening is not None:
            self._opening.result()

    def handlers(self) -> Handlers:
        """The source's and destinations' handlers, opened on first use for every step."""
        if self._handlers is None:
            self._handlers = self._opened.enter_context(open_handlers(self.definition))
        return self._handlers

    def close_handlers(self) -> None:
        self._handlers = None
        self._opened.close()

    @property
    def label(self) -> str:
        return f"transfer/{self.task_id}"

    def begin_step(self, flags: Progress) -> None:
        """Record that a step started, with what the previous step finished, in one
        write: a killed run leaves its last step on record for the next run's
        BEFORE_TASK_EXECUTED.  Not synced at once (one fsync a step); the durable
        commit of `_close` syncs them all."""
        self.flags |= flags
        with session_scope(self.config.database_url, durable=False) as session:
            executions.add_flags(session, self.execution_id, self._unwritten | flags)
        self._unwritten = Progress.PROGRESS_UNSPECIFIED

    def end_step(self, flags: Progress) -> None:
        """A step finished: written with the next step's start (or the close)."""
        self.flags |= flags
        self._unwritten |= flags


# -- the steps ----------------------------------------------------------------------------


def open_execution(run: TransferRun) -> None:
    """Start the run's execution record (and find the previous one) on a thread; the
    steps wait for it with `run.opened()` before they use it."""
    opening: Future[None] = Future()

    def start() -> None:
        try:
            with session_scope(run.config.database_url, durable=False) as session:
                execution = executions.start(session, run.task_id, run.flow_run_id)
                run.execution_id = execution.id
                run.previous = executions.last_before(session, run.task_id, execution.id)
        except BaseException as exc:  # raised again where the steps wait for it
            opening.set_exception(exc)
        else:
            opening.set_result(None)

    run._opening = opening
    threading.Thread(target=start, name="sf-execution", daemon=True).start()


class ExecutionUnavailable(Exception):
    """The execution record could not be opened: carries why, out of the `pre` task."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@task(name="pre", cache_policy=NO_CACHE, task_run_name="{run.label}: pre")
def pre(run: TransferRun) -> TransferPlan | State[Any]:
    """Plan, then ask BEFORE_TASK_EXECUTED; a refusal or veto comes back as a state."""
    logger = get_run_logger()
    try:
        run.opened()
    except Exception as exc:  # the run goes no further: see _pre_perform_post
        return Failed(name=ERRORED, message=str(exc), data=ExecutionUnavailable(exc))
    run.begin_step(Progress.PROGRESS_INIT_STARTED)
    bound = run.callbacks
    try:
        plan = plan_transfer(
            run.definition,
            batch_filter=bound.batch_filter if bound.has(Stage.FILTER) else None,
            handlers=run.handlers(),
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
    run.end_step(Progress.PROGRESS_INIT_DONE)
    logger.info("%s: %d files, %d bytes planned", run.label, len(plan.files), plan.total_bytes)
    return plan


@task(name="perform", cache_policy=NO_CACHE, task_run_name="{run.label}: perform")
def perform(run: TransferRun, plan: TransferPlan) -> Delivery:
    run.begin_step(Progress.PROGRESS_PROCESS_STARTED)
    reporter = run.reporter = ProgressReporter(run.task_id)
    reporter.start(len(plan.files), plan.total_bytes * len(plan.definition.destination))
    bound = run.callbacks
    try:
        if run.fan_out is not None and run.fan_out.parts > 1 and plan.files:
            return _fanned_out(run, plan, run.fan_out, reporter)
        delivery = deliver(
            plan,
            progress=reporter,
            after_results=bound.after_results,
            max_workers=run.max_workers,
            batch_size=run.batch_size,
            handlers=run.handlers(),
        )
    finally:
        # The last figures go out while `post` works; run_steps settles them.
        reporter.finish(wait=False)
    run.end_step(Progress.PROGRESS_PROCESS_DONE)
    return delivery


def _fanned_out(
    run: TransferRun, plan: TransferPlan, fan: FanOut, reporter: ProgressReporter
) -> Delivery:
    """The copy as child runs; their AFTER_RESULT_RECEIVED runs there."""
    delivery = deliver_fanned_out(
        plan,
        fan,
        label=run.label,
        metadata=run.callbacks.filtered,
        handlers=run.handlers(),
        progress=reporter,
    )
    run.end_step(Progress.PROGRESS_PROCESS_DONE)
    return delivery


@task(name="post", cache_policy=NO_CACHE, task_run_name="{run.label}: post")
def post(run: TransferRun, plan: TransferPlan, delivery: Delivery) -> TransferResult:
    run.begin_step(Progress.PROGRESS_FINAL_STARTED)
    result = finalize(plan, handlers=run.handlers())
    run.end_step(Progress.PROGRESS_FINAL_DONE)
    catalogued = catalog_delivered(run, plan)
    run.summary = {
        "files": len(result.files),
        "catalogued": catalogued,
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


def catalog_delivered(run: TransferRun, plan: TransferPlan) -> str:
    """Files delivered to a local destination inside a known space enter the catalog
    (in batches: one catalog transaction per batch, one `storeflow.file.created` event
    per new file).  The files are in place by now: a catalog that cannot be written is
    a warning, not a failed transfer (the `file-scan` deployment finds them later)."""
    paths = [
        Path(dest.directory) / planned.target(index)  # a name in the directory
        for index, dest in enumerate(plan.definition.destination)
        if protocol_kind(dest) == "local"
        for planned in plan.files
    ]
    if not paths:
        return "-"
    try:
        counts = register_delivered(run.config, paths)
    except Exception as exc:  # the delivery stands whatever the catalog says
        get_run_logger().warning("delivered files not catalogued: %s", exc)
        return f"failed: {exc}"
    return counts.summary()


def tell_after_task(run: TransferRun, outcome: ExecutionResult) -> None:
    """AFTER_TASK_EXECUTED, as a step of its own only when a callback listens: an empty
    task run would cost every transfer a round of Prefect bookkeeping for nothing."""
    if run.callbacks.has(Stage.AFTER_TASK_EXECUTED):
        after_task(by_ref(run), outcome)


@task(name="after-task", cache_policy=NO_CACHE, task_run_name="{run.label}: after-task")
def after_task(run: TransferRun, outcome: ExecutionResult) -> State[None]:
    """AFTER_TASK_EXECUTED: told, not asked; a failing callback is logged, not fatal.

    The nodeum seed has no way for this stage to change a movement that already ended,
    so the transfer's outcome stands; the step's own state records the verdict (named
    `CallbackFailed`, with the error as its message) so the UI and the API show it."""
    told = run.callbacks.callbacks.after_task(outcome)
    if told.failed:
        message = f"AFTER_TASK_EXECUTED callback {told.failed_callback} failed: {told.error}"
        get_run_logger().warning("%s", message)
        return Completed(name="CallbackFailed", message=message)
    return Completed(message=f"AFTER_TASK_EXECUTED told {len(told.calls)} callback(s)")


# -- the skeleton -------------------------------------------------------------------------


class TransferSkeleton(HookedRun):
    """One transfer in the hooked skeleton (tasks/skeleton.py): hook drivers see it as
    ACTIVE (delivered) or ERRORED, refused when vetoed or refused before copying."""

    func_name = "transfer"

    def __init__(self, run: TransferRun) -> None:
        self.run = run
        self.label = run.label
        self.refusal = REFUSED  # or VETOED: what a refusal's state is named

    @property
    def hooks(self) -> HookSettings:
        return self.run.config.hooks

    def hook_context(self) -> HookContext:
        run = self.run
        return HookContext.of_task(
            "transfer", run.task_id, run.flow_run_id, run.label, run.definition
        )

    def steps(self) -> ActionResults:
        try:
            return self._pre_perform_post()
        finally:
            self.run.close_handlers()
            if self.run.reporter is not None:
                self.run.reporter.settle()  # the progress artifact's last figures

    def _pre_perform_post(self) -> ActionResults:
        run = self.run
        planned = pre(by_ref(run), return_state=True).result(raise_on_failure=False)
        if isinstance(planned, ExecutionUnavailable):
            # Nothing planned, copied or recorded: the run ends on the database's error
            # (a StoreflowError: Errored, in one line; see run_hooked).
            raise planned.cause
        if isinstance(planned, Vetoed):
            raise planned  # refused before anything was copied: see `refused`
        if isinstance(planned, BaseException):
            # Refused: the definition or the places it names were found unsafe or
            # incomplete before anything was copied; anything else is unexpected.
            refused = isinstance(planned, StoreflowError)
            return self._failed(planned, REFUSED if refused else ERRORED, refused=refused)
        assert isinstance(planned, TransferPlan)
        try:
            delivery = perform(by_ref(run), by_ref(planned))
            result = post(by_ref(run), by_ref(planned), by_ref(delivery))
        except FanOutRefused as exc:  # fan-out refused before any child run started
            return self._failed(exc, REFUSED, refused=True)
        except Exception as exc:
            get_run_logger().error("%s failed: %s", run.label, exc)
            return self._failed(exc, ERRORED)
        message = f"{run.label}: {len(result.files)} files, {result.bytes} bytes delivered" + (
            f", {len(result.skipped)} skipped" if result.skipped else ""
        )
        _close(run, DELIVERED, message, Progress.PROGRESS_UNSPECIFIED, result)
        tell_after_task(run, ExecutionResult(status="SUCCESS", details=dict(run.summary)))
        return ActionResults(
            status=Status.ACTIVE, resource=_result_data(run, result), message=message
        )

    def _failed(self, error: BaseException, name: str, refused: bool = False) -> ActionResults:
        _close(self.run, name, str(error), Progress.PROGRESS_HAS_ERROR)
        tell_after_task(self.run, ExecutionResult(status="ERROR", error=str(error)))
        if refused:
            return ActionResults(status=None, error=str(error), refused=True)
        return ActionResults(status=Status.ERRORED, error=str(error))

    def refused(self, reason: Refused) -> ActionResults:
        """A misspelt driver, a pre hook's or a BEFORE_TASK_EXECUTED callback's veto."""
        self.refusal = VETOED if isinstance(reason, Vetoed) else REFUSED
        _close(self.run, self.refusal, f"{self.label}: {reason}", Progress.PROGRESS_STOPPED)
        return super().refused(reason)

    def announce(self, results: ActionResults, state: State[Any]) -> None:
        """`storeflow.transfer.run.<outcome>` (delivered, vetoed, refused, errored)."""
        inventory.emit_outcome(
            "transfer", "run", self.run.task_id, state.name or "", results.resource, state.message
        )

    def final_state(self, results: ActionResults) -> State[Any]:
        if results.refused:
            return Failed(name=self.refusal, message=f"{self.label}: {results.error}")
        if not results.succeeded:
            reason = results.error or results.message or "a post hook marked it failed"
            return Failed(name=ERRORED, message=f"{self.label}: {reason}")
        return Completed(name=DELIVERED, message=results.message, data=results.resource)


def run_steps(run: TransferRun) -> State[Any]:
    """Run one transfer through every step; return the flow run's final state."""
    open_execution(run)
    return run_hooked(TransferSkeleton(run))


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
) -> None:
    """The execution record's outcome, with every flag not yet written (durable)."""
    run.opened()  # a pre hook's veto can come before `pre` waited for it
    run.flags |= flags
    with session_scope(run.config.database_url) as session:
        executions.finish(
            session,
            run.execution_id,
            outcome,
            flags=flags | run._unwritten,
            message=message,
            files=len(result.files) if result else 0,
            nbytes=result.bytes if result else 0,
            skipped=len(result.skipped) if result else 0,
            file_metadata=run.callbacks.stored,
        )
    run._unwritten = Progress.PROGRESS_UNSPECIFIED
