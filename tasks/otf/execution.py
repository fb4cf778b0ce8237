"""OTF execution tasks in the hooked skeleton (tasks/skeleton.py):

    pre-hooks -> pre -> perform -> post -> after-task -> post-hooks

- `pre` checks the directory and asks BEFORE_TASK_EXECUTED (with the previous
  execution's Progress flags); a veto ends the run `Failed(name="Vetoed")`, nothing run.
- `perform` runs the command with ``/bin/sh -c`` in its directory (OTF's local
  execution), in its own process group so a timeout kills every process it started;
  each line of its output goes to the run's log as it comes.
- `post` publishes a table artifact; AFTER_TASK_EXECUTED is told the outcome (also of a
  failure).

The exit status is the outcome: 0 is `Completed(name="Executed")`, anything else
`Failed(name="Errored")`, a timeout `Failed(name="TimedOut")`.  Executions are recorded
in the transfer executions table under the task id, as transfers are.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.models.errors import Refused
from storeflow.models.otf import AddonExecutionDefinition, ExecutionDefinition
from storeflow.models.status import Status
from storeflow.sandbox.models import ExecutionResult, Progress, Stage, TaskExecution
from storeflow.sandbox.stages import CallbackSet
from storeflow.tasks import inventory
from storeflow.tasks.hook_base import ActionResults, HookContext
from storeflow.tasks.skeleton import HookedRun, HookSettings, run_hooked
from storeflow.tasks.transfer.progress import artifact_key

EXECUTED, VETOED, REFUSED, ERRORED, TIMED_OUT = (
    "Executed",
    "Vetoed",
    "Refused",
    "Errored",
    "TimedOut",
)
#: After SIGTERM, how long the command's processes have before SIGKILL.
KILL_GRACE = 2.0


class Vetoed(Refused):
    """A BEFORE_TASK_EXECUTED callback said no."""


@dataclass(frozen=True)
class CommandOutcome:
    returncode: int | None  # None: killed after its timeout
    seconds: float
    lines: int
    last_line: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


def run_command(command: str, directory: Path, timeout: float | None, log: Any) -> CommandOutcome:
    """`command` by /bin/sh in `directory`; every output line to `log(line)`; its whole
    process group killed after `timeout` seconds."""
    started = time.monotonic()
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: a timeout kills its children too
    )
    assert process.stdout is not None
    seen: list[str] = []  # every line would be too much to keep: the count and the last

    def pump() -> None:
        assert process.stdout is not None
        for count, raw in enumerate(process.stdout, start=1):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            seen[:] = [str(count), line]
            log(line)

    reader = threading.Thread(target=pump, name="execution-output", daemon=True)
    reader.start()
    try:
        returncode: int | None = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        returncode = None
    reader.join(timeout=KILL_GRACE)
    return CommandOutcome(
        returncode=returncode,
        seconds=time.monotonic() - started,
        lines=int(seen[0]) if seen else 0,
        last_line=seen[1] if seen else "",
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=KILL_GRACE)
            break
        except subprocess.TimeoutExpired:
            continue


@dataclass
class ExecutionRun:
    """Everything the steps of one execution flow run share."""

    config: StoreflowConfig
    definition: ExecutionDefinition | AddonExecutionDefinition
    task_id: str
    flow_run_id: str
    callbacks: CallbackSet
    timeout: float | None = None
    execution_id: int = 0
    previous: executions.ExecutionView | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"execution/{self.task_id}"

    def flag(self, flags: Progress) -> None:
        with session_scope(self.config.database_url, durable=False) as session:
            executions.add_flags(session, self.execution_id, flags)


@task(name="pre", cache_policy=NO_CACHE, task_run_name="{run.label}: pre")
def pre(run: ExecutionRun) -> Path:
    run.flag(Progress.PROGRESS_INIT_STARTED)
    if isinstance(run.definition, AddonExecutionDefinition):
        from storeflow.models.errors import StoreflowError
        from storeflow.tasks.otf.addons import check_execution

        try:
            check_execution(run.definition.model_dump(mode="json"), run.task_id)
        except StoreflowError as exc:
            raise Refused(str(exc)) from None
        directory = Path(".")
    else:
        directory = Path(run.definition.directory)
    if not directory.is_dir():
        raise Refused(f"directory {directory}: not a directory")
    if run.callbacks.callbacks:
        last = TaskExecution(progress=run.previous.progress) if run.previous else None
        outcome = run.callbacks.before_task(last)
        if outcome.vetoed:
            who = outcome.failed_callback or (outcome.calls[-1].name if outcome.calls else "?")
            reason = f": {outcome.error}" if outcome.error else ""
            raise Vetoed(f"BEFORE_TASK_EXECUTED callback {who} vetoed the execution{reason}")
    run.flag(Progress.PROGRESS_INIT_DONE)
    return directory


@task(name="perform", cache_policy=NO_CACHE, task_run_name="{run.label}: perform")
def perform(run: ExecutionRun, directory: Path) -> CommandOutcome:
    run.flag(Progress.PROGRESS_PROCESS_STARTED)
    logger = get_run_logger()
    if isinstance(run.definition, AddonExecutionDefinition):
        outcome = run_addon(run, logger)
    else:
        logger.info("%s: running %s in %s", run.label, run.definition.command, directory)
        outcome = run_command(run.definition.command, directory, run.timeout, logger.info)
    run.flag(Progress.PROGRESS_PROCESS_DONE)
    return outcome


def run_addon(run: ExecutionRun, logger: Any) -> CommandOutcome:
    """The addon's ``execute()`` (True: status 0, False: 1), its log in the run's log;
    after the timeout its ``kill()`` is asked and the run ends TimedOut."""
    from storeflow.tasks.otf import addons

    assert isinstance(run.definition, AddonExecutionDefinition)
    spec = run.definition.model_dump(mode="json")
    started = time.monotonic()
    with addons.addon_logs_to(logger):
        cls = addons.execution_class(spec["protocol"]["name"])
        handler = addons.instantiate(cls, spec, run.task_id)
        box: list[Any] = []

        def execute() -> None:
            try:
                box.append(addons.call(handler, "execute"))
            except Exception as exc:  # reported below, in the run's thread
                box.append(exc)

        worker = threading.Thread(target=execute, name="addon-execute", daemon=True)
        worker.start()
        worker.join(run.timeout)
        try:
            if worker.is_alive():
                kill = getattr(handler, "kill", None)
                if callable(kill):
                    kill()
                return CommandOutcome(None, time.monotonic() - started, 0, "")
            if isinstance(box[0], Exception):
                return CommandOutcome(1, time.monotonic() - started, 0, str(box[0]))
            ok = bool(box[0])
            last = "" if ok else f"{cls.__name__}.execute returned {box[0]!r}"
            return CommandOutcome(0 if ok else 1, time.monotonic() - started, 0, last)
        finally:
            tidy = getattr(handler, "tidy", None)
            if callable(tidy) and not worker.is_alive():
                tidy()


@task(name="post", cache_policy=NO_CACHE, task_run_name="{run.label}: post")
def post(run: ExecutionRun, outcome: CommandOutcome) -> None:
    run.flag(Progress.PROGRESS_FINAL_STARTED)
    run.summary = {
        "command": getattr(run.definition, "command", None) or "-",
        "directory": getattr(run.definition, "directory", None) or "-",
        "exit status": "timed out" if outcome.timed_out else outcome.returncode,
        "seconds": round(outcome.seconds, 3),
        "output lines": outcome.lines,
    }
    create_table_artifact(
        table=[{"item": key, "value": str(value)} for key, value in run.summary.items()],
        key=f"{artifact_key(run.task_id)}-execution",
        description=f"{run.label}: {'timed out' if outcome.timed_out else 'ran'}",
    )
    run.flag(Progress.PROGRESS_FINAL_DONE)


class ExecutionSkeleton(HookedRun):
    """One execution in the hooked skeleton; hook drivers see it as `execute`."""

    func_name = "execute"

    def __init__(self, run: ExecutionRun) -> None:
        self.run = run
        self.label = run.label
        self.refusal = REFUSED
        self.outcome_name = EXECUTED

    @property
    def hooks(self) -> HookSettings:
        return self.run.config.hooks

    def hook_context(self) -> HookContext:
        run = self.run
        return HookContext.of_task(
            "execution", run.task_id, run.flow_run_id, run.label, run.definition
        )

    def steps(self) -> ActionResults:
        run = self.run
        state = pre(run, return_state=True)
        found = state.result(raise_on_failure=False)
        if isinstance(found, Refused):
            raise found
        if isinstance(found, BaseException):
            return self._failed(ERRORED, f"{run.label}: {found}")
        outcome = perform(run, found)
        post(run, outcome)
        if outcome.timed_out:
            return self._failed(
                TIMED_OUT, f"{run.label}: timed out after {run.timeout:g} s, killed"
            )
        if outcome.returncode != 0:
            tail = f" (last output: {outcome.last_line})" if outcome.last_line else ""
            return self._failed(
                ERRORED, f"{run.label}: exited with status {outcome.returncode}{tail}"
            )
        message = f"{run.label}: exited with status 0 in {outcome.seconds:.2f} s"
        self._close(EXECUTED, message, Progress.PROGRESS_UNSPECIFIED)
        self._tell(ExecutionResult(status="SUCCESS", details={"exit status": 0}))
        return ActionResults(
            status=Status.ACTIVE,
            resource={"task_id": run.task_id, "execution_id": run.execution_id, "exit": 0},
            message=message,
        )

    def _failed(self, name: str, message: str) -> ActionResults:
        self.outcome_name = name
        self._close(name, message, Progress.PROGRESS_HAS_ERROR)
        self._tell(ExecutionResult(status="ERROR", error=message))
        return ActionResults(status=Status.ERRORED, error=message)

    def _tell(self, result: ExecutionResult) -> None:
        """AFTER_TASK_EXECUTED: told, not asked; a failing callback is logged, not fatal."""
        if not any(c.stage == Stage.AFTER_TASK_EXECUTED for c in self.run.callbacks.callbacks):
            return
        told = self.run.callbacks.after_task(result)
        if told.failed:
            get_run_logger().warning(
                "AFTER_TASK_EXECUTED callback %s failed: %s", told.failed_callback, told.error
            )

    def _close(self, outcome: str, message: str, flags: Progress) -> None:
        with session_scope(self.run.config.database_url) as session:
            executions.finish(session, self.run.execution_id, outcome, flags=flags, message=message)

    def refused(self, reason: Refused) -> ActionResults:
        self.refusal = VETOED if isinstance(reason, Vetoed) else REFUSED
        self._close(self.refusal, f"{self.label}: {reason}", Progress.PROGRESS_STOPPED)
        self._tell(ExecutionResult(status="STOPPED", error=str(reason)))
        return super().refused(reason)

    def announce(self, results: ActionResults, state: State[Any]) -> None:
        """`storeflow.execution.run.<outcome>` (executed, vetoed, refused, ...)."""
        inventory.emit_outcome(
            "execution", "run", self.run.task_id, state.name or "", results.resource,
            state.message,
        )  # fmt: skip

    def final_state(self, results: ActionResults) -> State[Any]:
        if results.refused:
            return Failed(name=self.refusal, message=f"{self.label}: {results.error}")
        if not results.succeeded:
            reason = results.error or results.message or "a post hook marked it failed"
            name = self.outcome_name if self.outcome_name != EXECUTED else ERRORED
            return Failed(name=name, message=reason)
        return Completed(name=EXECUTED, message=results.message, data=results.resource)


def run_execution(run: ExecutionRun) -> State[Any]:
    """Record the execution, then run it through the skeleton."""
    with session_scope(run.config.database_url, durable=False) as session:
        started = executions.start(session, run.task_id, run.flow_run_id)
        run.execution_id = started.id
        run.previous = executions.last_before(session, run.task_id, started.id)
    return run_hooked(ExecutionSkeleton(run))
