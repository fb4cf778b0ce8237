"""OTF batches: which of a batch's tasks run, in what order, and what each one ended as.

A batch task starts as soon as every task it depends on has ended COMPLETED (a task that
failed or timed out with ``continue_on_fail`` counts as done for its dependants, as in
OTF, but still fails the batch); tasks with nothing between them run at the same time.
A task whose dependency failed without ``continue_on_fail`` does not run.

Each task's outcome is recorded in the transfer executions table, as one row per task
under ``BATCH_ID#ORDER_ID`` with the batch's flow run id (the batch itself is a row under
``BATCH_ID``).  A rerun after a failed batch reads the rows of the previous run: a task
that COMPLETED then is not run again (and is recorded COMPLETED again, so a third run
skips it too) unless it says ``retry_on_rerun``; as OTF does with its log marks.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.states import State
from sqlalchemy import select
from sqlalchemy.orm import Session

from storeflow.models import executions
from storeflow.models.otf import BatchDefinition, BatchTask, OTFTask, parse_task
from storeflow.models.tables import TransferExecutionRow
from storeflow.models.transfer import DefinitionError

NOT_STARTED, RUNNING, COMPLETED, FAILED, TIMED_OUT = (
    "NOT_STARTED",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "TIMED_OUT",
)
#: The batch execution's own outcomes.
BATCH_COMPLETED, BATCH_FAILED = "Completed", "Failed"


@dataclass
class Member:
    """One task of a batch: its place, its definition, how it ended."""

    spec: BatchTask
    definition: OTFTask
    status: str = NOT_STARTED
    message: str = ""
    #: Ended COMPLETED in the previous (failed) run, so not run this time.
    carried: bool = False

    @property
    def order_id(self) -> int:
        return self.spec.order_id

    @property
    def label(self) -> str:
        return f"{self.spec.order_id} ({self.spec.task_id})"

    @property
    def done_for_dependants(self) -> bool:
        if self.status == COMPLETED:
            return True
        return self.status in (FAILED, TIMED_OUT) and self.spec.continue_on_fail


def member_key(batch_id: str, order_id: int) -> str:
    """The executions table's task id of a batch's task."""
    return f"{batch_id}#{order_id}"


def load_members(batch: BatchDefinition, config_dir: str | Path) -> list[Member]:
    """Every task of the batch, rendered and validated before anything runs (a bad one
    refuses the batch, naming it)."""
    from storeflow.tasks.otf.config import load_task

    members = []
    for spec in sorted(batch.tasks, key=lambda t: t.order_id):
        try:
            definition = parse_task(load_task(config_dir, spec.task_id), spec.task_id)
        except DefinitionError as exc:
            raise DefinitionError(
                f"batch task {spec.order_id} ({spec.task_id})", exc.problems
            ) from None
        members.append(Member(spec=spec, definition=definition))
    return members


def previous_statuses(session: Session, batch_id: str, execution_id: int) -> dict[int, str]:
    """The task outcomes of the batch's previous run, if that run failed; else none."""
    previous = executions.last_before(session, batch_id, execution_id)
    if previous is None or previous.outcome == BATCH_COMPLETED or not previous.flow_run_id:
        return {}
    rows = session.scalars(
        select(TransferExecutionRow).where(
            TransferExecutionRow.flow_run_id == previous.flow_run_id,
            TransferExecutionRow.task_id.startswith(f"{batch_id}#", autoescape=True),
        )
    )
    found: dict[int, str] = {}
    for row in rows:
        order = row.task_id.rpartition("#")[2]
        if order.isdigit() and row.outcome:
            found[int(order)] = row.outcome
    return found


def carry_over(members: list[Member], previous: dict[int, str]) -> None:
    """Mark what the previous failed run completed as done (unless retry_on_rerun)."""
    for member in members:
        if previous.get(member.order_id) == COMPLETED and not member.spec.retry_on_rerun:
            member.status = COMPLETED
            member.carried = True
            member.message = "completed in the previous run"


def status_of(state: State[Any]) -> str:
    if state.is_completed():
        return COMPLETED
    if state.name == "TimedOut":
        return TIMED_OUT
    return FAILED


def run_members(
    members: list[Member],
    launch: Callable[[Member], State[Any]],
    record: Callable[[Member], None],
) -> None:
    """Run every member whose dependencies allow, in parallel, until none can start.

    `launch` runs one member to its final state (in a worker thread, with a copy of the
    caller's context: Prefect's flow run context makes it a child of the batch's run);
    `record` is called, in this thread, with each member as it ends."""
    by_id = {m.order_id: m for m in members}

    def ready() -> list[Member]:
        return [
            m
            for m in members
            if m.status == NOT_STARTED
            and all(by_id[d].done_for_dependants for d in m.spec.dependencies)
        ]

    with ThreadPoolExecutor(max_workers=max(1, len(members)), thread_name_prefix="batch") as pool:
        running: dict[Future[State[Any]], Member] = {}
        while True:
            for member in ready():
                member.status = RUNNING
                context = contextvars.copy_context()
                running[pool.submit(context.run, launch, member)] = member
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                member = running.pop(future)
                try:
                    state = future.result()
                except Exception as exc:  # the child could not even start: a failure
                    member.status, member.message = FAILED, f"{type(exc).__name__}: {exc}"
                else:
                    member.status = status_of(state)
                    member.message = " ".join((state.message or state.name or "").split())
                record(member)


def verdict(members: list[Member]) -> tuple[bool, str]:
    """Whether the batch succeeded, and a one-line account of it."""
    failed = [m for m in members if m.status in (FAILED, TIMED_OUT)]
    not_run = [m for m in members if m.status == NOT_STARTED]
    carried = sum(1 for m in members if m.carried)
    if not failed and not not_run:
        note = f" ({carried} completed in the previous run)" if carried else ""
        return True, f"{len(members)} tasks completed{note}"
    parts = [
        f"task {m.label} {'timed out' if m.status == TIMED_OUT else 'failed'}"
        + (" (continued)" if m.spec.continue_on_fail else "")
        for m in failed
    ]
    if not_run:
        parts.append("not run: " + ", ".join(m.label for m in not_run))
    return False, "; ".join(parts)
