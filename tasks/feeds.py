"""Feeds as Prefect sees them: a subscription's automation, the matched events, the
deliveries, and deleting a feed or a subscription with everything that hangs on it.

A subscription with `auto` is an automation named `feed <feed> -> <listener>`: on each
`storeflow.feed.matched` event whose resource is the feed and which names the listener
among its related resources, it runs the `submit` deployment for the event's file with
`feed` set (the run reads the feed's parameters and approval itself, so nothing a user
wrote is a template the server renders).  Switching it off in the UI's Automations
stops new submissions; deleting the subscription deletes it.

The matcher emits one event per (file, feed), naming only the listeners whose delivery
it has just claimed: a replayed file event, or a matcher restarted mid-stream, finds the
claims taken and emits nothing for them, so no listener gets a file twice for a feed.
"""

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from prefect.events import emit_event

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import feed_repository as feeds
from storeflow.models import listener_repository as listeners
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput, NotFound, Refused
from storeflow.models.feed_criteria import Criteria, FeedKind, MatchFile, matches
from storeflow.models.feed_repository import FeedView, SubscriptionView
from storeflow.tasks.matcher import Matcher
from storeflow.tasks.submissions import processes_datasets

MATCHED_EVENT = "storeflow.feed.matched"
SUBMIT_DEPLOYMENT = "submit/submit"
#: Files read from the catalog at a time by a backfill or an execute.
BATCH = 500


def automation_name(feed: str, listener: str) -> str:
    return f"feed {feed} -> {listener}"


def feed_resource(feed: FeedView, file: MatchFile) -> dict[str, str]:
    """The matched event's resource: the feed, with the file as labels (globs match
    strings only)."""
    return {
        "prefect.resource.id": f"storeflow.feed.{feed.id}",
        "prefect.resource.name": feed.name,
        "storeflow.feed.id": str(feed.id),
        "storeflow.feed.name": feed.name,
        "storeflow.file.id": str(file.id),
        "storeflow.file.name": file.name,
        "storeflow.file.path": file.path,
        "storeflow.file.mime-type": file.mime_type,
    }


def listener_related(listener_id: int, name: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"storeflow.listener.{listener_id}",
        "prefect.resource.role": "listener",
        "prefect.resource.name": name,
    }


# -- automations -----------------------------------------------------------------------


def _submit_deployment_id() -> uuid.UUID:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(SUBMIT_DEPLOYMENT).id
        except ObjectNotFound:
            raise Refused(
                f"auto: the {SUBMIT_DEPLOYMENT} deployment does not exist on the Prefect "
                "server (storeflow server start deploys it); subscribe with auto false, or "
                "deploy it first"
            ) from None


def _label(name: str) -> dict[str, str]:
    """A run parameter the server renders from the matched event's resource label."""
    return {"__prefect_kind": "jinja", "template": f"{{{{ event.resource['{name}'] }}}}"}


def create_automation(
    feed: FeedView, listener_id: int, listener_name: str, *, dataset_jobs: bool = False
) -> str:
    """The subscription's automation (its id): the `submit` deployment on the feed's
    matched events that name this listener.  A dataset feed's run submits the dataset
    (its folder) to a listener that processes datasets (`dataset_jobs`), else the file
    that completed it."""
    from prefect.automations import Automation
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import EventTrigger, Posture

    deployment_id = _submit_deployment_id()
    resource, resource_type = _label("storeflow.file.id"), "file"
    if feed.kind is FeedKind.DATASET and dataset_jobs:
        resource, resource_type = _label("storeflow.dataset"), "dataset"
    automation = Automation(
        name=automation_name(feed.name, listener_name),
        description=(
            f"Submits each file that feed {feed.name} matches to listener {listener_name}; "
            "made by `storeflow feed subscribe`, removed by unsubscribe."
        ),
        trigger=EventTrigger(
            expect={MATCHED_EVENT},
            match={"storeflow.feed.id": str(feed.id)},
            match_related={
                "prefect.resource.role": "listener",
                "prefect.resource.id": f"storeflow.listener.{listener_id}",
            },
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[
            RunDeployment(
                source="selected",
                deployment_id=deployment_id,
                parameters={
                    "listener": str(listener_id),
                    "resource": resource,
                    "resource_type": resource_type,
                    "origin": "feed",
                    "feed": str(feed.id),
                },
            )
        ],
    )
    created = cast(Automation, automation.create())  # sync here: no event loop runs
    return str(created.id)


def delete_automation(automation_id: str | None) -> None:
    """Delete an automation; one already gone (deleted in the UI) is fine."""
    if not automation_id:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.delete_automation(uuid.UUID(automation_id))


# -- subscriptions ---------------------------------------------------------------------


@dataclass
class Subscribed:
    subscription: SubscriptionView
    created: bool
    backfilled: int = 0


def subscribe(
    config: StoreflowConfig, feed_ref: str, listener_ref: str, *, auto: bool = True
) -> Subscribed:
    """Subscribe a listener to a feed; with `auto`, its automation is made first (a
    failure leaves no subscription)."""
    with session_scope(config.database_url) as session:
        feed = feeds.find(session, feed_ref)
        try:
            listener = listeners.find(session, listener_ref)
        except NotFound as exc:
            raise InvalidInput("listener", str(exc)) from None
        if not listener.active:
            raise InvalidInput("listener", f"{listener.name} was deleted (inactive)")
        existing = feeds.subscription(session, feed.id, listener.id)
    if existing is not None:
        return Subscribed(existing, created=False)
    automation_id = (
        create_automation(
            feed, listener.id, listener.name, dataset_jobs=processes_datasets(listener)
        )
        if auto
        else None
    )
    try:
        with session_scope(config.database_url) as session:
            found, created = feeds.subscribe(session, feed.id, listener.id, auto=auto)
            if created and automation_id:
                feeds.set_automation(session, feed.id, listener.id, automation_id)
                found = found.model_copy(update={"automation_id": automation_id})
    except BaseException:
        delete_automation(automation_id)
        raise
    if not created:  # subscribed meanwhile by someone else, with its own automation
        delete_automation(automation_id)
    return Subscribed(found, created=created)


def unsubscribe(config: StoreflowConfig, feed_ref: str, listener_ref: str) -> SubscriptionView:
    with session_scope(config.database_url) as session:
        feed = feeds.find(session, feed_ref)
        listener = listeners.find(session, listener_ref)
        removed = feeds.unsubscribe(session, feed.id, listener.id)
    delete_automation(removed.automation_id)
    return removed


def delete_feed(config: StoreflowConfig, ref: str) -> FeedView:
    """Delete a feed, its subscriptions' automations, subscriptions and deliveries."""
    with session_scope(config.database_url) as session:
        found = feeds.find(session, ref)
    for subscription in found.subscriptions:
        delete_automation(subscription.automation_id)
    with session_scope(config.database_url) as session:
        return feeds.delete_feed(session, found.id)


def forget_listener(config: StoreflowConfig, listener_id: int) -> int:
    """A deleted listener's subscriptions and their automations removed; how many."""
    with session_scope(config.database_url) as session:
        subscribed = feeds.subscriptions_of_listener(session, listener_id)
        for subscription in subscribed:
            feeds.unsubscribe(session, subscription.feed_id, listener_id)
    for subscription in subscribed:
        delete_automation(subscription.automation_id)
    return len(subscribed)


# -- matching and announcing -----------------------------------------------------------


#: A dataset feed's requirement `i` is matched under the key feed_id * _SLOTS + i.
_SLOTS = 64


@dataclass
class FeedSet:
    """The file feeds and the dataset feeds with their automatic subscribers, each
    kind with a matcher over its criteria (a dataset feed's: each of its requirements,
    so a file event looks at a folder only when the file meets one of them)."""

    feeds: dict[int, FeedView]
    matcher: Matcher
    datasets: dict[int, FeedView] = field(default_factory=dict)
    requirements: Matcher = field(default_factory=lambda: Matcher([]))

    @classmethod
    def load(cls, config: StoreflowConfig) -> "FeedSet":
        with session_scope(config.database_url) as session:
            every = feeds.all_feeds(session)
        files = {f.id: f for f in every if f.kind is FeedKind.FILE}
        datasets = {f.id: f for f in every if f.kind is FeedKind.DATASET}
        required = [
            (feed.id * _SLOTS + i, criteria)
            for feed in datasets.values()
            for i, criteria in enumerate(feed.requirements())
        ]
        return cls(
            files,
            Matcher((f.id, f.file_criteria()) for f in files.values()),
            datasets,
            Matcher(required),
        )

    def dataset_feeds_of(self, file: MatchFile) -> list[FeedView]:
        """The dataset feeds with a requirement `file` meets."""
        ids = sorted({key // _SLOTS for key in self.requirements.match(file)})
        return [self.datasets[i] for i in ids]


def dataset_version(requirements: list[Criteria], members: list[MatchFile]) -> str | None:
    """The version of a folder's files that together meet every requirement (each met
    by at least one of them), or None while some requirement is unmet.  The version is
    a digest of the stamps of the files that meet any requirement: a file that meets
    none (a log, a temporary file) never makes the folder fire again, while a new or
    changed file that meets one does."""
    witnesses = [m for m in members if any(matches(r, m) for r in requirements)]
    if not all(any(matches(r, m) for m in witnesses) for r in requirements):
        return None
    digest = hashlib.sha256()
    for member in sorted(witnesses, key=lambda m: m.id):
        digest.update(f"{member.id}:{member.stamp}\n".encode())
    return digest.hexdigest()[:20]


@dataclass
class Announced:
    events: int = 0
    deliveries: int = 0


def announce_matches(
    config: StoreflowConfig, files: Iterable[MatchFile], feed_set: FeedSet | None = None
) -> Announced:
    """Match files against the file feeds and emit one `storeflow.feed.matched` per
    (file, feed) naming the automatic subscribers whose delivery was claimed now."""
    feed_set = feed_set or FeedSet.load(config)
    done = Announced()
    for file in files:
        for feed_id in feed_set.matcher.match(file):
            _announce(config, feed_set.feeds[feed_id], file, str(file.id), {}, done)
        for feed in feed_set.dataset_feeds_of(file):
            _announce_dataset(config, feed, file, done)
    return done


def _announce(
    config: StoreflowConfig,
    feed: FeedView,
    file: MatchFile,
    delivery: str,
    extra: dict[str, Any],
    done: Announced,
) -> None:
    """Claim `delivery` for each automatic subscriber and emit one matched event naming
    those whose claim is new (none: no event)."""
    auto = [s for s in feed.subscriptions if s.auto and s.automation_id]
    if not auto:
        return
    with session_scope(config.database_url) as session:
        claimed = [s for s in auto if feeds.claim(session, feed.id, s.listener_id, delivery)]
    if not claimed:
        return
    resource = feed_resource(feed, file)
    if extra.get("dataset"):
        resource["storeflow.dataset"] = str(extra["dataset"])
    emit_event(
        event=MATCHED_EVENT,
        resource=resource,
        related=[listener_related(s.listener_id, s.listener) for s in claimed],
        payload={"file_id": file.id, "listeners": [s.listener_id for s in claimed], **extra},
    )
    done.events += 1
    done.deliveries += len(claimed)


def _announce_dataset(
    config: StoreflowConfig, feed: FeedView, file: MatchFile, done: Announced
) -> None:
    """A dataset feed fires for the file's folder when its files meet every
    requirement, once per version of them; the file that completed it is the one the
    submission sends (pyclowder's file job), the folder is in the event."""
    if not any(s.auto and s.automation_id for s in feed.subscriptions):
        return
    with session_scope(config.database_url) as session:
        members = feeds.match_files(session, dataset=file.dataset)
    version = dataset_version(feed.requirements(), members)
    if version is None:
        return
    extra = {"dataset": file.dataset, "version": version, "files": len(members)}
    delivery = feeds.dataset_delivery(file.dataset, version)
    _announce(config, feed, file, delivery, extra, done)


def announce_file_ids(config: StoreflowConfig, file_ids: list[int]) -> Announced:
    with session_scope(config.database_url) as session:
        files = feeds.match_files(session, ids=file_ids)
    return announce_matches(config, files)


# -- execute and backfill: submissions without an event --------------------------------


def pending_files(
    config: StoreflowConfig,
    feed: FeedView,
    listener_id: int,
    *,
    force_all: bool = False,
    skip: int = 0,
    limit: int | None = None,
) -> list[MatchFile]:
    """The catalog's files the feed matches, in id order, read a bounded batch at a
    time; without `force_all`, only those not yet delivered to the listener."""
    criteria = feed.file_criteria()
    with session_scope(config.database_url) as session:
        done = set() if force_all else feeds.delivered(session, feed.id, listener_id)
    found: list[MatchFile] = []
    seen = 0
    after = 0
    while limit is None or len(found) < limit:
        with session_scope(config.database_url) as session:
            batch = feeds.match_files(session, after_id=after, limit=BATCH)
        if not batch:
            break
        after = batch[-1].id
        for file in batch:
            if str(file.id) in done or not matches(criteria, file):
                continue
            seen += 1
            if seen > skip:
                found.append(file)
                if limit is not None and len(found) >= limit:
                    break
    return found


def submission_parameters(feed: FeedView, listener_id: int, file_id: int) -> dict[str, Any]:
    """The `submit` deployment's parameters for one file of a feed."""
    return {
        "listener": str(listener_id),
        "resource": str(file_id),
        "resource_type": "file",
        "origin": "feed",
        "feed": str(feed.id),
    }


def _run_submission(parameters: dict[str, Any]) -> str:
    """A run of the `submit` deployment (created, not awaited); its id."""
    from prefect.deployments import run_deployment

    run = run_deployment(
        name=SUBMIT_DEPLOYMENT,
        parameters=parameters,
        timeout=0,
        tags=["storeflow", "listener", "submission", "feed"],
    )
    return str(getattr(run, "id", ""))


def execute(
    config: StoreflowConfig,
    feed_ref: str,
    listener_ref: str,
    *,
    force_all: bool = False,
    skip: int = 0,
    limit: int | None = None,
) -> int:
    """Submit the feed's matching files to the listener: those no run holds yet (never
    matched, or matched while the subscription's automation was off), or every one
    with `force_all`; skip/limit over them in id order.  Each is claimed before its run
    is made, and a run sends only if it binds the claim (a racing execute or
    automation submits it once); the count of runs made."""
    if skip < 0:
        raise InvalidInput("skip", "must be 0 or more")
    if limit is not None and limit < 1:
        raise InvalidInput("limit", "must be 1 or more")
    with session_scope(config.database_url) as session:
        feed = feeds.find(session, feed_ref)
        try:
            listener = listeners.find(session, listener_ref)
        except NotFound as exc:
            raise InvalidInput("listener", str(exc)) from None
    if feed.kind is not FeedKind.FILE:
        raise InvalidInput("feed", f"{feed.name} is a dataset feed: its folders fire by events")
    sent = 0
    for file in pending_files(
        config, feed, listener.id, force_all=force_all, skip=skip, limit=limit
    ):
        key = str(file.id)
        with session_scope(config.database_url) as session:
            if force_all:
                feeds.release(session, feed.id, listener.id, key)
            if not feeds.take(session, feed.id, listener.id, key):
                continue
        try:
            run_id = _run_submission(submission_parameters(feed, listener.id, file.id))
        except BaseException:
            with session_scope(config.database_url) as session:
                feeds.release(session, feed.id, listener.id, key, unheld_only=True)
            raise
        if run_id:
            # Held by its run from now (it binds the same id when it starts): counted
            # as submitted, and a second execute does not make another run for it.
            with session_scope(config.database_url) as session:
                feeds.bind_submission(session, feed.id, listener.id, key, run_id)
        sent += 1
    return sent


def backfill(config: StoreflowConfig, feed_ref: str, listener_ref: str) -> int:
    """Submit what the catalog already holds that the feed matches, a bounded batch
    at a time (each batch's files claimed, so a second backfill skips them)."""
    total = 0
    while True:
        sent = execute(config, feed_ref, listener_ref, limit=BATCH)
        total += sent
        if sent < BATCH:
            return total


def counts(config: StoreflowConfig, feed_ref: str, listener_ref: str) -> feeds.Counts:
    """The seed's counts for a feed and a listener: the files the feed matches and how
    their submissions to the listener stand (the tally made by one SQL query)."""
    with session_scope(config.database_url) as session:
        feed = feeds.find(session, feed_ref)
        try:
            listener = listeners.find(session, listener_ref)
        except NotFound as exc:
            raise InvalidInput("listener", str(exc)) from None
    if feed.kind is not FeedKind.FILE:
        raise InvalidInput("feed", f"{feed.name} is a dataset feed: counts are of file feeds")
    matching = [f.id for f in pending_files(config, feed, listener.id, force_all=True)]
    with session_scope(config.database_url) as session:
        return feeds.counts(session, feed.id, listener.id, matching)
