"""Transfer executions: what each run of a transfer task got through (seed 000's Progress).

A transfer task is identified by its `task_id` (the definition's name, or its source
directory); each flow run of it is one execution.  Flags are only ever added while a run
goes on, so a crash leaves the last step reached on record.  (The transfer steps write
them without a disk sync, which a killed process does not undo; after an OS crash or a
power cut, the flags since the last synced commit of the database may be missing.)
"""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from storeflow.models.tables import TransferExecutionRow, utcnow
from storeflow.sandbox.models import Progress


class ExecutionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: str
    flow_run_id: str | None
    progress: Progress
    outcome: str | None
    message: str | None
    files: int
    bytes: int
    skipped: int
    file_metadata: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None


def start(session: Session, task_id: str, flow_run_id: str | None) -> ExecutionView:
    row = TransferExecutionRow(
        task_id=task_id,
        flow_run_id=flow_run_id,
        progress=int(Progress.PROGRESS_UNSPECIFIED),
        file_metadata={},
        started_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return ExecutionView.model_validate(row)


def last_before(session: Session, task_id: str, execution_id: int) -> ExecutionView | None:
    """The execution of `task_id` that came just before `execution_id`."""
    row = session.scalar(
        select(TransferExecutionRow)
        .where(TransferExecutionRow.task_id == task_id, TransferExecutionRow.id < execution_id)
        .order_by(TransferExecutionRow.id.desc())
        .limit(1)
    )
    return None if row is None else ExecutionView.model_validate(row)


def latest(session: Session, task_id: str) -> ExecutionView | None:
    row = session.scalar(
        select(TransferExecutionRow)
        .where(TransferExecutionRow.task_id == task_id)
        .order_by(TransferExecutionRow.id.desc())
        .limit(1)
    )
    return None if row is None else ExecutionView.model_validate(row)


def add_flags(session: Session, execution_id: int, flags: Progress) -> None:
    session.execute(
        update(TransferExecutionRow)
        .where(TransferExecutionRow.id == execution_id)
        .values(progress=TransferExecutionRow.progress.op("|")(int(flags)))
        .execution_options(synchronize_session=False)
    )


def finish(
    session: Session,
    execution_id: int,
    outcome: str,
    *,
    flags: Progress = Progress.PROGRESS_UNSPECIFIED,
    message: str | None = None,
    files: int = 0,
    nbytes: int = 0,
    skipped: int = 0,
    file_metadata: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {
        "outcome": outcome,
        "message": message,
        "files": files,
        "bytes": nbytes,
        "skipped": skipped,
        "finished_at": utcnow(),
        "progress": TransferExecutionRow.progress.op("|")(int(flags)),
    }
    if file_metadata is not None:
        values["file_metadata"] = file_metadata
    session.execute(
        update(TransferExecutionRow)
        .where(TransferExecutionRow.id == execution_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def finish_unfinished(session: Session, flow_run_id: str, outcome: str, message: str) -> int:
    """Mark what a crashed or cancelled run left open; returns how many."""
    rows = list(
        session.scalars(
            select(TransferExecutionRow.id).where(
                TransferExecutionRow.flow_run_id == flow_run_id,
                TransferExecutionRow.outcome.is_(None),
            )
        )
    )
    for execution_id in rows:
        finish(
            session,
            execution_id,
            outcome,
            flags=Progress.PROGRESS_HAS_ERROR | Progress.PROGRESS_STOPPED,
            message=message,
        )
    return len(rows)
