"""Reads and writes of feeds, subscriptions and deliveries.

`create` checks everything before it writes (name, kind, criteria, parameters), so a
refused feed leaves nothing behind.  `claim` is how a submission for a feed is made at
most once per (feed, listener, resource): the unique key decides between racers.
"""

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storeflow.models.bounds import BoundError, check_document
from storeflow.models.catalog import FileMetadataRow, FileRow
from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.feed_criteria import Criteria, FeedKind, MatchFile, parse_criteria
from storeflow.models.feeds import FeedDeliveryRow, FeedRow, SubscriptionRow
from storeflow.models.listeners import ListenerRow
from storeflow.models.names import check_name
from storeflow.models.submissions import SubmissionRow, SubmissionStatus

MAX_DATASET_REQUIREMENTS = 50


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class SubscriptionView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    feed_id: int
    listener_id: int
    listener: str = ""
    auto: bool
    automation_id: str | None


class FeedView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: FeedKind
    criteria: dict[str, Any]
    parameters: dict[str, Any]
    approval: bool
    description: str
    created_at: datetime
    subscriptions: list[SubscriptionView] = []

    def file_criteria(self) -> Criteria:
        """A file feed's criteria (parsed again: they were checked when saved)."""
        return parse_criteria(self.criteria)

    def requirements(self) -> list[Criteria]:
        """A dataset feed's file criteria, each of which some file must meet."""
        return [parse_criteria(c) for c in self.criteria.get("files", [])]


def check_feed(
    name: str, kind: str, criteria: Any, parameters: Any
) -> tuple[FeedKind, dict[str, Any]]:
    """(kind, criteria as stored); InvalidInput naming the field at the first mistake."""
    try:
        check_name(name)
    except ValueError as exc:
        raise InvalidInput("name", str(exc)) from None
    if name.isdigit():
        raise InvalidInput("name", f"{name!r}: a feed name needs a letter (digits are ids)")
    try:
        feed_kind = FeedKind(kind)
    except ValueError:
        raise InvalidInput("kind", f"{kind!r} is not file or dataset") from None
    if not isinstance(parameters, dict):
        raise InvalidInput("parameters", "must be a JSON object")
    try:
        check_document(parameters, "parameters")
    except BoundError as exc:
        raise InvalidInput(exc.field, exc.reason) from None
    if feed_kind is FeedKind.FILE:
        parsed = parse_criteria(criteria)
        return feed_kind, parsed.model_dump(mode="json", exclude_defaults=True)
    if not isinstance(criteria, dict) or set(criteria) != {"files"}:
        raise InvalidInput("criteria", 'a dataset feed\'s criteria are {"files": [...]}')
    files = criteria["files"]
    if not isinstance(files, list) or not 1 <= len(files) <= MAX_DATASET_REQUIREMENTS:
        raise InvalidInput(
            "criteria.files", f"must list 1 to {MAX_DATASET_REQUIREMENTS} file criteria"
        )
    stored = [
        parse_criteria(c, f"criteria.files.{i}").model_dump(mode="json", exclude_defaults=True)
        for i, c in enumerate(files)
    ]
    return feed_kind, {"files": stored}


def _subscriptions(session: Session, feed_id: int) -> list[SubscriptionView]:
    query = (
        select(SubscriptionRow, ListenerRow.name)
        .join(ListenerRow, ListenerRow.id == SubscriptionRow.listener_id)
        .where(SubscriptionRow.feed_id == feed_id)
        .order_by(SubscriptionRow.id)
    )
    return [
        SubscriptionView.model_validate(row).model_copy(update={"listener": name})
        for row, name in session.execute(query)
    ]


def view(session: Session, row: FeedRow) -> FeedView:
    found = FeedView.model_validate(row)
    return found.model_copy(
        update={
            "created_at": _aware(found.created_at),
            "subscriptions": _subscriptions(session, row.id),
        }
    )


def create(
    session: Session,
    name: str,
    criteria: Any = None,
    *,
    kind: str = "file",
    parameters: Any = None,
    approval: bool = False,
    description: str = "",
) -> FeedView:
    feed_kind, stored = check_feed(name, kind, criteria, parameters or {})
    if session.scalar(select(FeedRow.id).where(FeedRow.name == name)) is not None:
        raise InvalidInput("name", f"a feed named {name!r} exists")
    row = FeedRow(
        name=name,
        kind=feed_kind.value,
        criteria=stored,
        parameters=parameters or {},
        approval=approval,
        description=description,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # created meanwhile by someone else
        raise InvalidInput("name", f"a feed named {name!r} exists") from None
    return view(session, row)


def _row(session: Session, ref: str | int) -> FeedRow:
    text = str(ref)
    if text.isdigit():
        row = session.get(FeedRow, int(text))
    else:
        row = session.scalar(select(FeedRow).where(FeedRow.name == text))
    if row is None:
        raise NotFound(f"feed {text!r} does not exist")
    return row


def find(session: Session, ref: str | int) -> FeedView:
    """A feed by id (digits) or name."""
    return view(session, _row(session, ref))


def list_feeds(
    session: Session,
    *,
    name: str | None = None,
    listener_id: int | None = None,
    skip: int = 0,
    limit: int | None = None,
) -> list[FeedView]:
    query = select(FeedRow).order_by(FeedRow.id).offset(skip)
    if name is not None:
        query = query.where(FeedRow.name == name)
    if listener_id is not None:
        query = query.where(
            FeedRow.id.in_(
                select(SubscriptionRow.feed_id).where(SubscriptionRow.listener_id == listener_id)
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return [view(session, row) for row in session.scalars(query)]


def all_feeds(session: Session) -> list[FeedView]:
    return list_feeds(session)


def delete_feed(session: Session, ref: str | int) -> FeedView:
    """Remove a feed, its subscriptions and deliveries (the caller removes the
    automations listed in the returned view first)."""
    row = _row(session, ref)
    found = view(session, row)
    listener_ids = [s.listener_id for s in found.subscriptions]
    session.execute(delete(FeedDeliveryRow).where(FeedDeliveryRow.feed_id == row.id))
    session.execute(delete(SubscriptionRow).where(SubscriptionRow.feed_id == row.id))
    session.delete(row)
    session.flush()
    for listener_id in listener_ids:
        refresh_feed_count(session, listener_id)
    return found


# -- subscriptions ---------------------------------------------------------------------


def refresh_feed_count(session: Session, listener_id: int) -> None:
    """The listener's `feeds` column: how many feeds it is subscribed to."""
    listener = session.get(ListenerRow, listener_id)
    if listener is not None:
        listener.feeds = (
            session.scalar(
                select(func.count())
                .select_from(SubscriptionRow)
                .where(SubscriptionRow.listener_id == listener_id)
            )
            or 0
        )
        session.flush()


def subscribe(
    session: Session, feed_id: int, listener_id: int, *, auto: bool
) -> tuple[SubscriptionView, bool]:
    """(the subscription, whether it is new); an existing one keeps its settings."""
    existing = subscription(session, feed_id, listener_id)
    if existing is not None:
        return existing, False
    row = SubscriptionRow(
        feed_id=feed_id, listener_id=listener_id, auto=auto, created_at=datetime.now(UTC)
    )
    session.add(row)
    session.flush()
    refresh_feed_count(session, listener_id)
    found = subscription(session, feed_id, listener_id)
    assert found is not None
    return found, True


def subscription(session: Session, feed_id: int, listener_id: int) -> SubscriptionView | None:
    for found in _subscriptions(session, feed_id):
        if found.listener_id == listener_id:
            return found
    return None


def set_automation(
    session: Session, feed_id: int, listener_id: int, automation_id: str | None
) -> None:
    row = session.scalar(
        select(SubscriptionRow).where(
            SubscriptionRow.feed_id == feed_id, SubscriptionRow.listener_id == listener_id
        )
    )
    if row is None:
        raise NotFound(f"listener #{listener_id} is not subscribed to feed #{feed_id}")
    row.automation_id = automation_id
    session.flush()


def unsubscribe(session: Session, feed_id: int, listener_id: int) -> SubscriptionView:
    found = subscription(session, feed_id, listener_id)
    if found is None:
        raise NotFound(f"listener #{listener_id} is not subscribed to feed #{feed_id}")
    session.execute(delete(SubscriptionRow).where(SubscriptionRow.id == found.id))
    session.flush()
    refresh_feed_count(session, listener_id)
    return found


def subscriptions_of_listener(session: Session, listener_id: int) -> list[SubscriptionView]:
    query = (
        select(SubscriptionRow.feed_id)
        .where(SubscriptionRow.listener_id == listener_id)
        .order_by(SubscriptionRow.id)
    )
    found = []
    for feed_id in session.scalars(query):
        sub = subscription(session, feed_id, listener_id)
        if sub is not None:
            found.append(sub)
    return found


# -- deliveries: at most one submission per (feed, listener, resource) ------------------


def claim(session: Session, feed_id: int, listener_id: int, resource: str) -> bool:
    """Take the one delivery of `resource` for this feed to this listener; False when it
    was taken already (a replay, a restarted matcher, a racing run).  Committed by the
    caller's session; a savepoint keeps the caller's transaction usable on a loss."""
    try:
        with session.begin_nested():
            session.add(
                FeedDeliveryRow(
                    feed_id=feed_id,
                    listener_id=listener_id,
                    resource=resource,
                    created_at=datetime.now(UTC),
                )
            )
    except IntegrityError:
        return False
    return True


def take(session: Session, feed_id: int, listener_id: int, resource: str) -> bool:
    """Claim `resource` for a run about to be made: a new claim, or one no run holds
    yet (the matcher's, whose event started nothing: its automation was off, or the
    matcher stopped between its claim and its event).  False when a run holds it.  Two
    takers of one unheld claim each make a run; `bind_submission` lets one send."""
    if claim(session, feed_id, listener_id, resource):
        return True
    holder = session.scalar(
        select(FeedDeliveryRow.submission_id).where(
            FeedDeliveryRow.feed_id == feed_id,
            FeedDeliveryRow.listener_id == listener_id,
            FeedDeliveryRow.resource == resource,
        )
    )
    return holder is None


def release(
    session: Session, feed_id: int, listener_id: int, resource: str, *, unheld_only: bool = False
) -> None:
    """Give a claim back (its submission could not be made), so a later try can;
    `unheld_only`: unless a run holds it meanwhile."""
    query = delete(FeedDeliveryRow).where(
        FeedDeliveryRow.feed_id == feed_id,
        FeedDeliveryRow.listener_id == listener_id,
        FeedDeliveryRow.resource == resource,
    )
    if unheld_only:
        query = query.where(FeedDeliveryRow.submission_id.is_(None))
    session.execute(query)


DATASET_PREFIX = "dataset:"


def dataset_delivery(folder: str, version: str) -> str:
    """A dataset feed's delivery key: the folder at one version of its files."""
    return f"{DATASET_PREFIX}{folder}@{version}"


def _dataset_resource(
    session: Session, feed_id: int, listener_id: int, resource: str, submission_id: str
) -> str | None:
    """The dataset delivery a run for a dataset feed stands for (`resource`: the
    dataset's folder, or the file that completed it): the one the run holds already (a
    resumed run), else the newest claimed one of the folder that no run holds; None
    when there is none (nothing to send)."""
    if resource.isdigit():
        file = session.get(FileRow, int(resource))
        if file is None:
            return None
        folder = file.dataset
    else:
        folder = resource
    prefix = f"{DATASET_PREFIX}{folder}@"
    query = (
        select(FeedDeliveryRow.resource, FeedDeliveryRow.submission_id)
        .where(
            FeedDeliveryRow.feed_id == feed_id,
            FeedDeliveryRow.listener_id == listener_id,
            FeedDeliveryRow.resource.startswith(prefix, autoescape=True),
            (FeedDeliveryRow.submission_id.is_(None))
            | (FeedDeliveryRow.submission_id == submission_id),
        )
        .order_by(FeedDeliveryRow.id.desc())
    )
    rows = list(session.execute(query))
    for resource, holder in rows:
        if holder == submission_id:
            return str(resource)
    return str(rows[0][0]) if rows else None


def bind_submission(
    session: Session, feed_id: int, listener_id: int, resource: str, submission_id: str
) -> bool:
    """Make `submission_id` the one submission of this delivery (claiming it if nobody
    has); False when another submission holds it: this one is a duplicate.  For a
    dataset feed `resource` is the dataset's folder (or the file that completed it,
    for a listener that takes files only), and the delivery is the folder's version
    the matcher claimed (a run with none to take sends nothing)."""
    if session.scalar(select(FeedRow.kind).where(FeedRow.id == feed_id)) == FeedKind.DATASET:
        found = _dataset_resource(session, feed_id, listener_id, resource, submission_id)
        if found is None:
            return False
        resource = found
    claim(session, feed_id, listener_id, resource)
    bound = session.execute(
        update(FeedDeliveryRow)
        .where(
            FeedDeliveryRow.feed_id == feed_id,
            FeedDeliveryRow.listener_id == listener_id,
            FeedDeliveryRow.resource == resource,
            (FeedDeliveryRow.submission_id.is_(None))
            | (FeedDeliveryRow.submission_id == submission_id),
        )
        .values(submission_id=submission_id)
    )
    return bool(getattr(bound, "rowcount", 0) == 1)


def approve_submission(session: Session, submission_id: str) -> bool:
    """A submission waiting for approval becomes SUBMITTED; False if it was not waiting."""
    moved = session.execute(
        update(SubmissionRow)
        .where(
            SubmissionRow.id == submission_id,
            SubmissionRow.status == SubmissionStatus.PENDING_APPROVAL.value,
        )
        .values(status=SubmissionStatus.SUBMITTED.value)
    )
    return bool(getattr(moved, "rowcount", 0) == 1)


def record_submission(
    session: Session, feed_id: int, listener_id: int, resource: str, submission_id: str
) -> None:
    row = session.scalar(
        select(FeedDeliveryRow).where(
            FeedDeliveryRow.feed_id == feed_id,
            FeedDeliveryRow.listener_id == listener_id,
            FeedDeliveryRow.resource == resource,
        )
    )
    if row is not None:
        row.submission_id = submission_id
        session.flush()


def delivered(session: Session, feed_id: int, listener_id: int) -> set[str]:
    """The resources a run holds for this feed and listener (a claim no run holds is
    not delivered: `execute` sends it)."""
    query = select(FeedDeliveryRow.resource).where(
        FeedDeliveryRow.feed_id == feed_id,
        FeedDeliveryRow.listener_id == listener_id,
        FeedDeliveryRow.submission_id.is_not(None),
    )
    return set(session.scalars(query))


class Counts(BaseModel):
    total: int
    success: int
    failure: int
    submitted: int
    not_submitted: int
    pending_approval: int


def counts(session: Session, feed_id: int, listener_id: int, matching: list[int]) -> Counts:
    """The seed's counts for a feed and a listener, in one SQL query over the files
    `matching` the feed: how many of them ended how at this listener.  A file a run
    holds whose submission is not recorded yet (the run has not started) counts as
    submitted; one no run holds (matched while its automation was off) as not
    submitted, so the five add up to the total."""
    latest = (
        select(
            FeedDeliveryRow.resource,
            FeedDeliveryRow.submission_id.label("run"),
            SubmissionRow.status.label("status"),
        )
        .join(SubmissionRow, SubmissionRow.id == FeedDeliveryRow.submission_id, isouter=True)
        .where(FeedDeliveryRow.feed_id == feed_id, FeedDeliveryRow.listener_id == listener_id)
        .subquery()
    )
    status = latest.c.status
    ids = [str(i) for i in matching]

    def count_of(value: SubmissionStatus) -> Any:
        return func.coalesce(func.sum(case((status == value.value, 1), else_=0)), 0)

    unrecorded = func.coalesce(
        func.sum(case(((latest.c.run.is_not(None)) & (status.is_(None)), 1), else_=0)), 0
    )
    query = (
        select(
            func.count(latest.c.run),
            count_of(SubmissionStatus.SUCCESS),
            count_of(SubmissionStatus.FAILURE),
            count_of(SubmissionStatus.SUBMITTED) + unrecorded,
            count_of(SubmissionStatus.PENDING_APPROVAL),
        )
        .select_from(latest)
        .where(latest.c.resource.in_(ids))
    )
    delivered_n, success, failure, submitted, pending = session.execute(query).one()
    total = len(ids)
    return Counts(
        total=total,
        success=success,
        failure=failure,
        submitted=submitted,
        not_submitted=total - delivered_n,
        pending_approval=pending,
    )


def match_files(
    session: Session,
    *,
    after_id: int = 0,
    limit: int | None = None,
    ids: list[int] | None = None,
    dataset: str | None = None,
) -> list[MatchFile]:
    """Catalogued files as criteria see them (metadata documents merged, oldest first),
    by id from `after_id` on: a backfill reads the catalog a bounded batch at a time;
    `dataset`: the files of one folder."""
    query = select(FileRow).where(FileRow.id > after_id).order_by(FileRow.id)
    if ids is not None:
        query = query.where(FileRow.id.in_(ids))
    if dataset is not None:
        query = query.where(FileRow.dataset == dataset)
    if limit is not None:
        query = query.limit(limit)
    rows = list(session.scalars(query))
    merged: dict[int, dict[str, Any]] = {row.id: {} for row in rows}
    if rows:
        documents = (
            select(FileMetadataRow.file_id, FileMetadataRow.content)
            .where(FileMetadataRow.file_id.in_(list(merged)))
            .order_by(FileMetadataRow.id)
        )
        for file_id, content in session.execute(documents):
            if isinstance(content, dict):
                merged[file_id].update(content)
    return [
        MatchFile(
            id=row.id,
            name=row.name,
            path=row.path,
            space=row.space,
            dataset=row.dataset,
            mime_type=row.mime_type,
            size=row.size,
            owner=row.owner,
            group=row.group,
            metadata=merged[row.id],
            stamp=f"{row.size}:{_aware(row.mtime).isoformat()}:{row.checksum or ''}",
        )
        for row in rows
    ]
