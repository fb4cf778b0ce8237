"""Reads and writes of submissions and their events.

The one rule that matters: a terminal status (SUCCESS, FAILURE) never changes.  A
late or duplicate message after it is ignored (`record_event` returns None), so the
status consumer can be at-least-once without ever flipping an outcome.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.listeners import ListenerRow
from storeflow.models.submissions import (
    Origin,
    SubmissionEventRow,
    SubmissionRow,
    SubmissionStatus,
)
from storeflow.models.tables import utcnow


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class EventView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    kind: str
    status: str | None
    progress: int | None
    message: str


class SubmissionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    listener_id: int
    listener: str = ""
    resource_type: str
    resource_id: str
    origin: str
    parameters: dict[str, Any]
    status: SubmissionStatus
    message: str | None
    timeout_seconds: int
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    events: list[EventView] = []


def view(session: Session, row: SubmissionRow, *, events: bool = False) -> SubmissionView:
    found = SubmissionView.model_validate(row)
    listener = session.get(ListenerRow, row.listener_id)
    update: dict[str, Any] = {
        "listener": listener.name if listener else "",
        "submitted_at": _aware(found.submitted_at),
        "started_at": _aware(found.started_at),
        "finished_at": _aware(found.finished_at),
    }
    if events:
        update["events"] = events_of(session, row.id)
    return found.model_copy(update=update)


def events_of(session: Session, submission_id: str) -> list[EventView]:
    query = (
        select(SubmissionEventRow)
        .where(SubmissionEventRow.submission_id == submission_id)
        .order_by(SubmissionEventRow.id)
    )
    return [
        EventView.model_validate(e).model_copy(update={"at": _aware(e.at)})
        for e in session.scalars(query)
    ]


def create(
    session: Session,
    submission_id: str,
    *,
    listener_id: int,
    resource_type: str,
    resource_id: str,
    origin: Origin,
    parameters: dict[str, Any],
    timeout_seconds: int,
    status: SubmissionStatus = SubmissionStatus.SUBMITTED,
) -> tuple[SubmissionView, bool]:
    """The submission of a flow run: made once; (existing, False) when it already is."""
    row = session.get(SubmissionRow, submission_id)
    if row is not None:
        return view(session, row), False
    if resource_type not in ("file", "dataset"):
        raise InvalidInput("resource_type", f"{resource_type!r} is not file or dataset")
    row = SubmissionRow(
        id=submission_id,
        listener_id=listener_id,
        resource_type=resource_type,
        resource_id=resource_id,
        origin=origin.value,
        parameters=parameters,
        status=status.value,
        timeout_seconds=timeout_seconds,
        submitted_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return view(session, row), True


def _row(session: Session, submission_id: str, *, lock: bool = False) -> SubmissionRow:
    query = select(SubmissionRow).where(SubmissionRow.id == submission_id)
    if lock:
        query = query.with_for_update()
    row = session.scalar(query)
    if row is None:
        raise NotFound(f"submission {submission_id!r} does not exist")
    return row


def get(session: Session, submission_id: str, *, events: bool = True) -> SubmissionView:
    return view(session, _row(session, submission_id), events=events)


def list_submissions(
    session: Session,
    *,
    listener_id: int | None = None,
    status: SubmissionStatus | None = None,
    limit: int | None = None,
) -> list[SubmissionView]:
    query = select(SubmissionRow).order_by(SubmissionRow.submitted_at)
    if listener_id is not None:
        query = query.where(SubmissionRow.listener_id == listener_id)
    if status is not None:
        query = query.where(SubmissionRow.status == status.value)
    if limit is not None:
        query = query.limit(limit)
    return [view(session, row) for row in session.scalars(query)]


def record_event(
    session: Session,
    submission_id: str,
    *,
    kind: str,
    message: str,
    outcome: SubmissionStatus | None = None,
    progress: int | None = None,
    started: bool = False,
    at: datetime | None = None,
) -> SubmissionView | None:
    """Add an event; `outcome` ends the submission.  None if it had already ended."""
    row = _row(session, submission_id, lock=True)
    if SubmissionStatus(row.status).terminal:
        return None
    now = at or utcnow()
    session.add(
        SubmissionEventRow(
            submission_id=submission_id,
            at=now,
            kind=kind,
            status=outcome.value if outcome else None,
            progress=progress,
            message=message,
        )
    )
    row.message = message
    if started and row.started_at is None:
        row.started_at = now
    if outcome is not None:
        row.status = outcome.value
        row.finished_at = now
        if row.started_at is None:
            row.started_at = now
    session.flush()
    return view(session, row)


def overdue(session: Session, now: datetime | None = None) -> list[str]:
    """SUBMITTED submissions whose timeout has passed (their listener died or is stuck)."""
    now = now or utcnow()
    query = select(SubmissionRow.id, SubmissionRow.submitted_at, SubmissionRow.timeout_seconds)
    query = query.where(SubmissionRow.status == SubmissionStatus.SUBMITTED.value)
    return [
        sid
        for sid, submitted, timeout in session.execute(query)
        if (_aware(submitted) or now) + timedelta(seconds=timeout) <= now
    ]


@dataclass(frozen=True)
class NewEvent:
    submission_id: str
    kind: str
    message: str
    outcome: SubmissionStatus | None = None
    progress: int | None = None
    started: bool = True


@dataclass
class Recorded:
    """What `record_events` did: submissions it changed (and which of them ended),
    events ignored (their submission had ended), submission ids it does not know."""

    changed: dict[str, None] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    ignored: int = 0
    unknown: list[str] = field(default_factory=list)


def record_events(session: Session, events: list[NewEvent], at: datetime | None = None) -> Recorded:
    """`record_event` for many events at once, in their order: one read of the
    submissions, one insert of the events, the same rule (a terminal status never
    changes).  For the status consumer, whose replies arrive in bursts."""
    now = at or utcnow()
    ids = list(dict.fromkeys(e.submission_id for e in events))
    rows = {
        row.id: row
        for row in session.scalars(
            select(SubmissionRow).where(SubmissionRow.id.in_(ids)).with_for_update()
        )
    }
    done = Recorded()
    inserts: list[dict[str, Any]] = []
    for event in events:
        row = rows.get(event.submission_id)
        if row is None:
            done.unknown.append(event.submission_id)
            continue
        if SubmissionStatus(row.status).terminal:
            done.ignored += 1
            continue
        inserts.append(
            {
                "submission_id": row.id,
                "at": now,
                "kind": event.kind,
                "status": event.outcome.value if event.outcome else None,
                "progress": event.progress,
                "message": event.message,
            }
        )
        row.message = event.message
        if event.started and row.started_at is None:
            row.started_at = now
        if event.outcome is not None:
            row.status = event.outcome.value
            row.finished_at = now
            if row.started_at is None:
                row.started_at = now
            done.ended.append(row.id)
        done.changed[row.id] = None
    if inserts:
        session.execute(insert(SubmissionEventRow), inserts)
    session.flush()
    return done
