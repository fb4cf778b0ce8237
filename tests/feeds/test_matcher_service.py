"""The matcher as `listeners serve` runs it: it follows the server's event log, and a
matcher restarted with an earlier cursor (what it does after a crash: it reads from a
little before its start) reads the same file events again and announces nothing twice:
the claims are rows under a unique key in storeflow's database."""

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.models.db import session_scope
from storeflow.models.feeds import FeedDeliveryRow
from storeflow.models.listener_repository import ListenerView
from storeflow.services.matcher import FeedMatcher
from tests.feeds.test_subscriptions import (  # noqa: F401
    listener,
    matched_events,
    submit_deployment,
    write,
)
from tests.listeners.broker import wait_for

runner = CliRunner()


def drained() -> None:
    """This process's events sent to the server (the watcher's are sent the same way)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)


def test_a_restarted_matcher_reads_the_log_again_and_announces_nothing_twice(
    submit_deployment: str,  # noqa: F811
    listener: ListenerView,  # noqa: F811
    tmp_path: Path,
) -> None:
    name = f"logged-{uuid.uuid4().hex[:6]}"
    created = runner.invoke(app, ["feed", "create", name, "--name-regex", r"log_[0-9]+\.csv"])
    assert created.exit_code == 0, created.stderr
    assert runner.invoke(app, ["feed", "subscribe", name, listener.name]).exit_code == 0
    since = datetime.now(UTC)  # the events are stamped by this process's clock
    hits = [write(tmp_path / "l", f"log_{i}.csv", 50) for i in range(3)]
    write(tmp_path / "l", "other.csv", 50)
    drained()

    first = FeedMatcher(StoreflowConfig(), since=since, interval=0.2).start()
    try:
        wait_for(lambda: first.announced.events == 3 or None, 90, "three matched events")
    finally:
        first.stop()
    # A crash and a restart: the new matcher starts from the same earlier cursor and
    # reads all four file events again (and nothing announces them twice).
    restarted = FeedMatcher(StoreflowConfig(), since=since)
    read = 0
    deadline = time.monotonic() + 60
    while read < 4 and time.monotonic() < deadline:
        read += restarted.poll_once()
    assert read >= 4
    assert restarted.announced.events == 0 and restarted.announced.deliveries == 0

    assert len(matched_events(name, at_least=3)) == 3
    with session_scope(StoreflowConfig().database_url) as session:
        claimed = session.query(FeedDeliveryRow.resource).all()
    assert sorted(int(r) for (r,) in claimed) == sorted(hits)
    # An event naming a file id of another storeflow database (another path) on the
    # same Prefect server is not this catalog's file: nothing is matched for it.
    released = FeedMatcher(StoreflowConfig())
    with session_scope(StoreflowConfig().database_url) as session:
        session.query(FeedDeliveryRow).delete()
    assert released.handle(hits[0], "/elsewhere/log_0.csv").events == 0
    assert released.handle(hits[0], str(tmp_path.resolve() / "l" / "log_0.csv")).events == 1
