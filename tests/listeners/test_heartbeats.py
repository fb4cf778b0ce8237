"""Listeners exist by heartbeat: the consumer on the `extractors` fanout upserts them."""

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.listeners import listener_app
from storeflow.models import listener_repository as listeners
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.listener_repository import ListenerView, parse_heartbeat
from storeflow.models.tables import utcnow
from storeflow.services.heartbeats import HeartbeatConsumer
from tests.listeners.broker import URL, delete_queues, heartbeat, publish, unique, wait_for


@pytest.fixture
def consumer(storeflow_home: Path) -> Iterator[HeartbeatConsumer]:
    queue = unique("storeflow.test-heartbeats")
    running = HeartbeatConsumer(URL, StoreflowConfig().database_url, queue=queue)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        delete_queues(queue)


def listener(name: str, heartbeats: int = 1) -> ListenerView | None:
    with session_scope(StoreflowConfig().database_url) as session:
        found = listeners.list_listeners(session, name=name, include_inactive=True)
    return found[0] if found and found[0].heartbeats >= heartbeats else None


def test_a_heartbeat_makes_a_listener_and_a_newer_version_updates_it(
    consumer: HeartbeatConsumer,
) -> None:
    name = unique("wordcount")
    params = {"schema": {"lang": {"type": "string"}}}
    publish("extractors", "", heartbeat(name, description="counts", parameters=params))
    first = wait_for(lambda: listener(name), what="the listener")
    assert first.queue == name and first.version == "1.0" and first.description == "counts"
    assert first.parameters == params and first.active and first.alive
    assert first.instance_ids == ["i-1"] and first.feeds == 0

    publish("extractors", "", heartbeat(name, instance="i-2", version="1.1", description="v2"))
    second = wait_for(lambda: listener(name, 2), what="the second heartbeat")
    assert second.version == "1.1" and second.description == "v2"
    assert second.instance_ids == ["i-1", "i-2"]
    assert second.first_heartbeat == first.first_heartbeat
    assert second.last_heartbeat >= first.last_heartbeat

    # An older instance still heartbeating does not roll the description back.
    publish("extractors", "", heartbeat(name, instance="i-1", version="1.0", description="old"))
    third = wait_for(lambda: listener(name, 3), what="the third heartbeat")
    assert third.version == "1.1" and third.description == "v2"


def test_malformed_heartbeats_are_logged_and_dropped_and_the_consumer_goes_on(
    consumer: HeartbeatConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="storeflow.services.broker")
    name = unique("after-garbage")
    publish("extractors", "", b"not json{")
    publish("extractors", "", {"id": "x", "queue": "q"})  # no extractor_info
    publish("extractors", "", {"id": "x", "queue": "", "extractor_info": {"name": "n"}})
    publish("extractors", "", heartbeat(name))
    wait_for(lambda: listener(name), what="the good heartbeat after the bad ones")
    assert consumer.dropped == 3
    dropped = [r.getMessage() for r in caplog.records if "dropped a malformed" in r.getMessage()]
    assert any("heartbeat: not JSON" in m for m in dropped)
    assert any("heartbeat.extractor_info: Field required" in m for m in dropped)
    assert any("heartbeat.queue: is empty" in m for m in dropped)


def test_parse_heartbeat_names_the_field() -> None:
    with pytest.raises(InvalidInput, match=r"^heartbeat.extractor_info.name: "):
        parse_heartbeat(json.dumps({"id": "a", "queue": "q", "extractor_info": {}}).encode())
    with pytest.raises(InvalidInput, match="not a JSON object"):
        parse_heartbeat(b"[1]")


def test_liveness_follows_the_observed_heartbeat_interval(storeflow_home: Path) -> None:
    beat = parse_heartbeat(json.dumps(heartbeat("lively")).encode())
    start = utcnow()
    with session_scope(StoreflowConfig().database_url) as session:
        listeners.record_heartbeat(session, beat, start)
        seen = listeners.record_heartbeat(session, beat, start + timedelta(seconds=20))
    assert seen.heartbeat_interval == 20
    with session_scope(StoreflowConfig().database_url) as session:
        row = listeners._row(session, "lively")
        assert listeners.view(row, start + timedelta(seconds=75)).alive
        assert not listeners.view(row, start + timedelta(seconds=90)).alive


def test_cli_list_show_delete_keeps_the_history(storeflow_home: Path) -> None:
    beat = parse_heartbeat(json.dumps(heartbeat("ocr", description="reads text")).encode())
    with session_scope(StoreflowConfig().database_url) as session:
        listeners.record_heartbeat(session, beat)
    runner = CliRunner()
    shown = runner.invoke(listener_app, ["list", "--json"])
    assert shown.exit_code == 0 and [v["name"] for v in json.loads(shown.stdout)] == ["ocr"]
    shown = runner.invoke(listener_app, ["show", "ocr", "--json"])
    assert json.loads(shown.stdout)["description"] == "reads text"

    deleted = runner.invoke(listener_app, ["delete", "ocr", "--json"])
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["active"] is False
    assert json.loads(runner.invoke(listener_app, ["list", "--json"]).stdout) == []
    everything = json.loads(runner.invoke(listener_app, ["list", "--all", "--json"]).stdout)
    assert [(v["name"], v["active"], v["alive"]) for v in everything] == [("ocr", False, False)]

    missing = runner.invoke(listener_app, ["delete", "nope"])
    assert missing.exit_code == 2 and "listener 'nope' does not exist" in missing.stderr
    with session_scope(StoreflowConfig().database_url) as session, pytest.raises(NotFound):
        listeners.find(session, "nope")
