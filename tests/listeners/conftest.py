"""Fixtures for listener tests: a catalogued file, a listener, the status consumer."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import listener_repository as listeners
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView, parse_heartbeat
from storeflow.models.listener_settings import ListenerSettings
from storeflow.services.run_mirror import RunMirror
from storeflow.services.serve import Services, running
from storeflow.services.status import StatusConsumer
from storeflow.tasks.catalog import register
from tests.listeners.broker import URL, delete_queues, heartbeat, unique, wait_for
from tests.listeners.extractor import ExtractorProcess, free_port


@pytest.fixture(scope="session", autouse=True)
def prefect_up(prefect_backend: str) -> None:
    """Start the session's ephemeral Prefect server from this thread, once: several
    threads (events worker, run mirror) opening clients at the same moment would each
    start one on the same database."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.hello()


@dataclass
class Wire:
    """Where this test's jobs go and replies come back."""

    reply_queue: str
    api_url: str


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    reply_queue = unique("storeflow.test-replies")
    monkeypatch.setenv("STOREFLOW_BROKER_URL", URL)
    monkeypatch.setenv("STOREFLOW_REPLY_QUEUE", reply_queue)
    monkeypatch.setenv("STOREFLOW_API_URL", "http://127.0.0.1:9/")
    yield Wire(reply_queue, "http://127.0.0.1:9/")
    delete_queues(reply_queue)


@pytest.fixture
def status_consumer(storeflow_home: Path, wire: Wire) -> Iterator[StatusConsumer]:
    database_url = StoreflowConfig().database_url
    mirror = RunMirror(database_url).start()
    consumer = StatusConsumer(URL, database_url, mirror, queue=wire.reply_queue)
    # Its own name on the broker, so a test can have just this connection closed.
    consumer.connection_name = unique("storeflow.test-statuses")
    consumer.start()
    try:
        yield consumer
    finally:
        consumer.stop()
        mirror.stop()


def make_listener(name: str | None = None, **info: Any) -> ListenerView:
    name = name or unique("counter")
    beat = parse_heartbeat(json.dumps(heartbeat(name, **info)).encode())
    with session_scope(StoreflowConfig().database_url) as session:
        return listeners.record_heartbeat(session, beat)


@pytest.fixture
def listener() -> Iterator[ListenerView]:
    made = make_listener(
        parameters={"schema": {"lang": {"type": "string", "enum": ["en", "fr"]}}},
        process={"file": ["text/*"]},
    )
    yield made
    delete_queues(made.queue, f"error.{made.queue}")


@pytest.fixture
def text_file(tmp_path: Path) -> FileView:
    path = tmp_path / "dataset-a" / "words.txt"
    path.parent.mkdir()
    path.write_text("one two three\nfour five\n")
    return register(StoreflowConfig(), path)[0]


@contextmanager
def serving(
    monkeypatch: pytest.MonkeyPatch, broker_url: str = URL, watch: bool = False
) -> Iterator[Services]:
    """`storeflow listeners serve` for one test: its own queues and API port, and the
    settings the submit runs read (from the environment, as on a worker)."""
    settings = ListenerSettings(
        broker_url=broker_url,
        api_url=f"http://127.0.0.1:{free_port()}/",
        reply_queue=unique("storeflow.test-replies"),
        heartbeat_queue=unique("storeflow.test-heartbeats"),
    )
    monkeypatch.setenv("STOREFLOW_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("STOREFLOW_API_URL", settings.api_url)
    monkeypatch.setenv("STOREFLOW_REPLY_QUEUE", settings.reply_queue)
    with running(StoreflowConfig(), settings, watch=watch) as started:
        yield started
    if broker_url == URL:  # a test's private broker goes with its queues
        delete_queues(settings.reply_queue, settings.heartbeat_queue)


def listener_of(process: ExtractorProcess) -> ListenerView:
    """The listener an extractor's first heartbeat made (its output if none came)."""

    def probe() -> ListenerView | None:
        with session_scope(StoreflowConfig().database_url) as session:
            found = listeners.list_listeners(session, name=process.name)
        return found[0] if found else None

    try:
        return wait_for(probe, 60, f"a heartbeat from {process.name}")
    except AssertionError:
        raise AssertionError(process.output()) from None
