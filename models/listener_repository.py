"""Listeners as heartbeats describe them: parse the wire, upsert, judge liveness.

The heartbeat is the body stock pyclowder extractors publish on the fanout exchange
`extractors`: `{"id", "queue", "owner", "extractor_info"}`.  A heartbeat updates the
listener's liveness; one that carries a newer version (or the first one) also
updates what the listener says of itself (description, parameters, queue).
"""

import json
from datetime import datetime, timedelta
from typing import Any

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.listeners import ListenerRow
from storeflow.models.tables import utcnow

# pyclowder's default HEARTBEAT is 300 s: before two heartbeats of one instance have
# shown its interval, a listener is alive for three of those.
DEFAULT_WINDOW = timedelta(seconds=900)
# Missing this many heartbeats in a row makes a listener not alive.
MISSED_HEARTBEATS = 3
MIN_WINDOW = timedelta(seconds=30)


class ExtractorInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    version: str = ""
    description: str = ""
    parameters: dict[str, Any] = {}


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    queue: str
    owner: str | None = None
    extractor_info: ExtractorInfo


def parse_heartbeat(body: bytes) -> Heartbeat:
    """A heartbeat from its wire bytes; InvalidInput naming the field if malformed."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput("heartbeat", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("heartbeat", "not a JSON object")
    try:
        beat = Heartbeat.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"heartbeat.{field}", first["msg"]) from None
    if not beat.queue.strip():
        raise InvalidInput("heartbeat.queue", "is empty")
    if not beat.extractor_info.name.strip():
        raise InvalidInput("heartbeat.extractor_info.name", "is empty")
    return beat


class ListenerView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    version: str
    description: str
    queue: str
    owner: str | None
    parameters: dict[str, Any]
    extractor_info: dict[str, Any]
    instance_ids: list[str]
    first_heartbeat: datetime
    last_heartbeat: datetime
    heartbeat_interval: float | None
    feeds: int
    active: bool
    heartbeats: int
    alive: bool = False


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def liveness_window(interval: float | None) -> timedelta:
    if interval is None:
        return DEFAULT_WINDOW
    return max(MIN_WINDOW, timedelta(seconds=interval * MISSED_HEARTBEATS))


def view(row: ListenerRow, now: datetime | None = None) -> ListenerView:
    found = ListenerView.model_validate(row)
    last = _aware(found.last_heartbeat)
    alive = found.active and (now or utcnow()) - last <= liveness_window(found.heartbeat_interval)
    return found.model_copy(
        update={
            "first_heartbeat": _aware(found.first_heartbeat),
            "last_heartbeat": last,
            "alive": alive,
        }
    )


def _newer(candidate: str, current: str) -> bool:
    try:
        return Version(candidate) > Version(current)
    except InvalidVersion:
        return candidate != current


def record_heartbeat(
    session: Session, beat: Heartbeat, now: datetime | None = None
) -> ListenerView:
    """Upsert the listener a heartbeat describes (a deleted one becomes active again)."""
    now = now or utcnow()
    info = beat.extractor_info
    row = session.scalar(select(ListenerRow).where(ListenerRow.name == info.name).with_for_update())
    if row is None:
        row = ListenerRow(
            name=info.name,
            first_heartbeat=now,
            instance_ids=[],
            heartbeats=0,
            feeds=0,
            active=True,
        )
        session.add(row)
        describe = True
    else:
        describe = _newer(info.version, row.version) or info.version == row.version
        ids = list(row.instance_ids or [])
        if ids and ids[-1] == beat.id:
            row.heartbeat_interval = max(0.0, (now - _aware(row.last_heartbeat)).total_seconds())
    if describe:
        row.version = info.version
        row.description = info.description
        row.parameters = info.parameters
        row.extractor_info = info.model_dump()
        row.queue = beat.queue
        row.owner = beat.owner
    ids = [i for i in (row.instance_ids or []) if i != beat.id]
    row.instance_ids = [*ids, beat.id]  # the latest instance last
    row.last_heartbeat = now
    row.heartbeats = (row.heartbeats or 0) + 1
    row.active = True
    session.flush()
    return view(row, now)


def find(session: Session, ref: str) -> ListenerView:
    """A listener by id (digits) or name."""
    return view(_row(session, ref))


def _row(session: Session, ref: str) -> ListenerRow:
    if ref.isdigit():
        row = session.get(ListenerRow, int(ref))
    else:
        row = session.scalar(select(ListenerRow).where(ListenerRow.name == ref))
    if row is None:
        raise NotFound(f"listener {ref!r} does not exist")
    return row


def list_listeners(
    session: Session,
    *,
    name: str | None = None,
    listener_id: int | None = None,
    include_inactive: bool = False,
    skip: int = 0,
    limit: int | None = None,
) -> list[ListenerView]:
    query = select(ListenerRow).order_by(ListenerRow.id).offset(skip)
    if name is not None:
        query = query.where(ListenerRow.name == name)
    if listener_id is not None:
        query = query.where(ListenerRow.id == listener_id)
    if not include_inactive:
        query = query.where(ListenerRow.active.is_(True))
    if limit is not None:
        query = query.limit(limit)
    now = utcnow()
    return [view(row, now) for row in session.scalars(query)]


def deactivate(session: Session, ref: str) -> ListenerView:
    """Mark a listener inactive and unsubscribe it from every feed; its history stays."""
    row = _row(session, ref)
    row.active = False
    row.feeds = 0  # no feeds exist yet (issue 13): nothing else to unsubscribe from
    session.flush()
    return view(row)
