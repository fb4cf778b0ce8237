"""Reads and writes of resource rows, with the lifecycle's guarantees.

Every write bumps the etag. `acquire` is the per-resource lock: one atomic
compare-and-set on (etag, lock owner), so two runs never work on the same
resource at once, whichever worker or process they run in.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storeflow.models.errors import Busy, EtagConflict, NameTaken, NotFound
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Status
from storeflow.models.tables import ResourceRow, utcnow


def view(row: ResourceRow) -> ResourceView:
    return ResourceView.model_validate(row)


def find(session: Session, kind: str, name: str, scope: str = "") -> ResourceView:
    row = session.scalar(
        select(ResourceRow).where(
            ResourceRow.kind == kind, ResourceRow.scope == scope, ResourceRow.name == name
        )
    )
    if row is None:
        raise NotFound(f"{kind} {name!r} does not exist", kind, name)
    return view(row)


def get(session: Session, resource_id: int) -> ResourceView:
    # populate_existing: our UPDATEs bypass the identity map, so re-read the row.
    row = session.get(ResourceRow, resource_id, populate_existing=True)
    if row is None:
        raise NotFound(f"resource #{resource_id} does not exist")
    return view(row)


def list_kind(
    session: Session, kind: str, scope: str | None = None, parent_id: int | None = None
) -> list[ResourceView]:
    query = select(ResourceRow).where(ResourceRow.kind == kind).order_by(ResourceRow.id)
    if scope is not None:
        query = query.where(ResourceRow.scope == scope)
    if parent_id is not None:
        query = query.where(ResourceRow.parent_id == parent_id)
    return [view(row) for row in session.scalars(query)]


def recently_changed(session: Session, kind: str, limit: int) -> tuple[list[ResourceView], int]:
    """At most `limit` live (not deleted) resources of `kind`, the most recently
    changed, in creation order; and how many live ones there are."""
    live = (ResourceRow.kind == kind, ResourceRow.deleted.is_(False))
    total = session.scalar(select(func.count()).select_from(ResourceRow).where(*live)) or 0
    recent = (
        select(ResourceRow)
        .where(*live)
        .order_by(ResourceRow.updated_at.desc(), ResourceRow.id.desc())
        .limit(limit)
    )
    rows = sorted(session.scalars(recent), key=lambda row: row.id)
    return [view(row) for row in rows], total


def children(session: Session, parent_id: int) -> list[ResourceView]:
    """Resources of any kind that live inside another (a space's snapshots, exposers)."""
    query = select(ResourceRow).where(ResourceRow.parent_id == parent_id).order_by(ResourceRow.id)
    return [view(row) for row in session.scalars(query)]


def insert(
    session: Session,
    kind: str,
    name: str,
    spec: dict[str, Any],
    *,
    status: Status = Status.PENDING,
    scope: str = "",
    parent_id: int | None = None,
    state: dict[str, Any] | None = None,
) -> ResourceView:
    row = ResourceRow(
        kind=kind,
        name=name,
        scope=scope,
        parent_id=parent_id,
        spec=spec,
        state=state or {},
        status=status.value,
        etag=1,
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise NameTaken(f"{kind} {name!r} already exists") from None
    return view(row)


def acquire(
    session: Session,
    resource_id: int,
    etag: int,
    owner: str,
    status: Status,
    *,
    action: str,
    lease: float,
    soft_delete: bool = False,
    is_stale: Callable[[ResourceView], bool] | None = None,
) -> ResourceView:
    """Take the resource for `owner`, for `lease` seconds, if its etag is still `etag`;
    set `status` and record `action`.

    The write comes first and is conditional, so it is atomic on SQLite and
    PostgreSQL alike; only when it matches nothing do we read to explain why.
    A lock whose lease ran out (its run stopped renewing it: killed, lost) or held
    by a run that has ended (`is_stale`) is taken over, so a crashed worker cannot
    wedge a resource forever.
    """
    values: dict[str, Any] = {
        "status": status.value,
        "status_message": None,
        "lock_owner": owner,
        "lock_expires_at": lease_end(lease),
        "last_action": action,
        "etag": ResourceRow.etag + 1,
        "updated_at": utcnow(),
    }
    if soft_delete:
        values["deleted"] = True

    def take(held_by: str | None) -> bool:
        held = (
            ResourceRow.lock_owner.is_(None)
            if held_by is None
            else (ResourceRow.lock_owner == held_by)
        )
        result = session.execute(
            update(ResourceRow)
            .where(ResourceRow.id == resource_id, ResourceRow.etag == etag, held)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    if not take(None):
        current = get(session, resource_id)
        if current.etag != etag:
            raise EtagConflict(
                f"{current.kind} {current.name!r} changed since you read it "
                f"(etag {etag} given, now {current.etag}); read it again and retry"
            )
        holder = current.lock_owner
        stale = holder is not None and is_stale is not None and is_stale(current)
        if not (stale and take(holder)):
            raise Busy(
                f"{current.kind} {current.name!r} is being changed by flow run "
                f"{holder}; retry when it has finished"
            )
    return get(session, resource_id)


def lease_end(lease: float) -> datetime:
    return utcnow() + timedelta(seconds=lease)


def lease_expired(resource: ResourceView, now: datetime | None = None) -> bool:
    """True when the resource is locked and its holder stopped renewing the lease."""
    if resource.lock_owner is None or resource.lock_expires_at is None:
        return False
    expires = resource.lock_expires_at
    if expires.tzinfo is None:  # SQLite keeps no time zone: written in UTC
        expires = expires.replace(tzinfo=UTC)
    return expires < (now or utcnow())


def renew(session: Session, resource_id: int, owner: str, lease: float) -> bool:
    """Extend `owner`'s lease; False when it no longer holds the resource."""
    result = session.execute(
        update(ResourceRow)
        .where(ResourceRow.id == resource_id, ResourceRow.lock_owner == owner)
        .values(lock_expires_at=lease_end(lease))
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release(
    session: Session,
    resource_id: int,
    owner: str,
    status: Status,
    *,
    message: str | None = None,
    name: str | None = None,
    spec: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    deleted: bool | None = None,
) -> ResourceView | None:
    """Record the outcome of `owner`'s operation and free the resource.

    Returns None when the row is gone or no longer held by `owner`.
    """
    values: dict[str, Any] = {
        "status": status.value,
        "status_message": message,
        "lock_owner": None,
        "lock_expires_at": None,
        "etag": ResourceRow.etag + 1,
        "updated_at": utcnow(),
    }
    for key, value in (("name", name), ("spec", spec), ("state", state), ("deleted", deleted)):
        if value is not None:
            values[key] = value
    result = session.execute(
        update(ResourceRow)
        .where(ResourceRow.id == resource_id, ResourceRow.lock_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return get(session, resource_id)


def update_observed(
    session: Session,
    resource_id: int,
    *,
    status: Status | None = None,
    message: str | None = None,
    state: dict[str, Any] | None = None,
) -> ResourceView:
    """Record what reconcile observed on a resource nobody holds."""
    values: dict[str, Any] = {"etag": ResourceRow.etag + 1, "updated_at": utcnow()}
    if status is not None:
        values["status"] = status.value
        values["status_message"] = message
    if state is not None:
        values["state"] = state
    session.execute(
        update(ResourceRow)
        .where(ResourceRow.id == resource_id, ResourceRow.lock_owner.is_(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return get(session, resource_id)


def release_owned_by(session: Session, owner: str, message: str) -> Sequence[int]:
    """Mark every resource held by `owner` ERRORED and free it (a crashed run)."""
    ids = list(session.scalars(select(ResourceRow.id).where(ResourceRow.lock_owner == owner)))
    for resource_id in ids:
        release(session, resource_id, owner, Status.ERRORED, message=message, deleted=False)
    return ids


def hard_delete(session: Session, resource_id: int) -> None:
    row = session.get(ResourceRow, resource_id)
    if row is not None:
        session.delete(row)
        session.flush()
