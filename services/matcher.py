"""The feed matcher service: file events in, `storeflow.feed.matched` events out.

It follows the Prefect server's event log for `storeflow.file.created` and
`storeflow.file.updated` (read in order of occurrence from a cursor, a page at a time:
it works the same on every server, and a restarted matcher resumes from where it is
told, `since`) and hands each file to tasks/feeds.announce_matches, which claims each
(feed, listener, file) delivery before it emits: an event seen twice (a replay, pages
that overlap after a restart) emits nothing the second time.  The feeds are reloaded
when they or their subscriptions change (one small query per event).
"""

import logging
import threading
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import func, select

from storeflow.blocks.config import StoreflowConfig
from storeflow.models.db import session_scope
from storeflow.models.feeds import FeedRow, SubscriptionRow
from storeflow.tasks.feeds import Announced, FeedSet, announce_matches

FILE_EVENTS = ["storeflow.file.created", "storeflow.file.updated"]
PAGE = 50  # the most a server returns in one page
log = logging.getLogger("storeflow.matcher")


def feeds_version(database_url: str) -> tuple[Any, ...]:
    """Changes whenever a feed or a subscription is added, changed or removed."""
    with session_scope(database_url) as session:
        feeds_row = session.execute(
            select(func.count(), func.max(FeedRow.id)).select_from(FeedRow)
        ).one()
        subs_row = session.execute(
            select(
                func.count(),
                func.max(SubscriptionRow.id),
                func.count(SubscriptionRow.automation_id),
            ).select_from(SubscriptionRow)
        ).one()
    return (*feeds_row, *subs_row)


class FeedMatcher:
    """Matches file events against the feeds, polling in a thread of its own."""

    def __init__(
        self,
        config: StoreflowConfig,
        *,
        since: datetime | None = None,
        interval: float = 1.0,
    ) -> None:
        self.config = config
        # Events from a little before the start: what arrived while it was down.
        self.since = since or datetime.now(UTC) - timedelta(minutes=10)
        self.interval = interval
        self._seen: deque[UUID] = deque(maxlen=4 * PAGE)
        self._feed_set: FeedSet | None = None
        self._version: tuple[Any, ...] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping = threading.Event()
        self.announced = Announced()

    def feed_set(self) -> FeedSet:
        version = feeds_version(self.config.database_url)
        if self._feed_set is None or version != self._version:
            self._feed_set, self._version = FeedSet.load(self.config), version
        return self._feed_set

    def handle(self, file_id: int, path: str | None = None) -> Announced:
        """Match one registered file (also what a caller registering files can use).
        With `path` (the event's), a catalog file elsewhere is not this event's: the
        event came from another storeflow database sharing the Prefect server."""
        from storeflow.models import feed_repository as feeds

        with session_scope(self.config.database_url) as session:
            files = feeds.match_files(session, ids=[file_id])
        if path is not None:
            files = [f for f in files if f.path == path]
        done = announce_matches(self.config, files, self.feed_set())
        self.announced.events += done.events
        self.announced.deliveries += done.deliveries
        return done

    def poll_once(self) -> int:
        """Read the file events after the cursor (a page) and match them; how many."""
        from prefect.client.orchestration import get_client
        from prefect.events.filters import (
            EventFilter,
            EventNameFilter,
            EventOccurredFilter,
            EventOrder,
        )

        wanted = EventFilter(
            event=EventNameFilter(name=FILE_EVENTS),
            occurred=EventOccurredFilter(since=self.since, until=datetime.now(UTC)),
            order=EventOrder.ASC,
        )
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=wanted, limit=PAGE)
        handled = 0
        for event in page.events:
            if event.id in self._seen:
                continue
            self._seen.append(event.id)
            self.since = max(self.since, event.occurred)
            raw = event.resource.get("storeflow.file.id")
            if raw is None or not raw.isdigit():
                continue
            try:
                self.handle(int(raw), event.resource.get("storeflow.file.path"))
            except Exception:  # one bad file must not stop the others
                log.exception("matching file #%s failed", raw)
            handled += 1
        return handled

    def _run(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                # A full page: more may wait behind it, read on without a pause.
                while self.poll_once() >= PAGE and not self._stopping.is_set():
                    pass
                self._started.set()
                if failing:
                    log.info("reading file events again")
                failing = False
            except Exception:  # the server restarting: try again, said once per outage
                if not failing:
                    log.exception("reading file events failed (retrying)")
                failing = True
            self._stopping.wait(self.interval)

    def start(self, timeout: float = 30, *, wait: bool = True) -> "FeedMatcher":
        """Start polling; with `wait`, return once a first page was read (TimeoutError
        if none can be within `timeout`)."""
        self._thread = threading.Thread(target=self._run, name="storeflow-matcher", daemon=True)
        self._thread.start()
        if wait and not self._started.wait(timeout):
            self.stop()
            raise TimeoutError(f"the feed matcher could not read events within {timeout} s")
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
