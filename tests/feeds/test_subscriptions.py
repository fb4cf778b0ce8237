"""Subscriptions as automations on the session's Prefect server: made, named, matched
by the feed's events, removed; one matched event per (file, feed), none on replay;
execute and counts."""

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.flows.submissions import submit
from storeflow.models import feed_repository as feeds
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView
from storeflow.services.matcher import FeedMatcher
from storeflow.tasks import feeds as feed_steps
from storeflow.tasks.catalog import register
from tests.listeners.conftest import make_listener

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def submit_deployment() -> Iterator[str]:
    """The `submit` deployment, as `storeflow server start` makes it (no worker needed:
    runs it creates stay scheduled)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow(submit)
        deployment_id = client.create_deployment(flow_id=flow_id, name="submit")
    yield str(deployment_id)


@pytest.fixture
def listener() -> ListenerView:
    return make_listener(f"feeds-{uuid.uuid4().hex[:8]}")


def automations_named(name: str) -> list[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return list(client.read_automations_by_name(name))


def matched_events(feed_name: str, timeout: float = 20, at_least: int = 1) -> list[Any]:
    """The feed's matched events, by its name (unique to a test: every test has its own
    storeflow database, so feed ids repeat on the session's Prefect server)."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.events.schemas.events import ResourceSpecification
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    wanted = EventFilter(
        event=EventNameFilter(name=[feed_steps.MATCHED_EVENT]),
        resource=EventResourceFilter(
            labels=ResourceSpecification({"storeflow.feed.name": feed_name})
        ),
    )
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            found = list(client.read_events(filter=wanted, limit=50).events)
            if len(found) >= at_least:
                break
            time.sleep(0.5)
    return found


def listeners_named(event: Any) -> list[str]:
    """The listeners a matched event names.  (Prefect's events worker may also attach
    a flow run of this process that ran earlier, from the context it keeps.)"""
    return [r.id for r in event.related if r.role == "listener"]


def write(folder: Path, name: str, size: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"a,b\n" + b"1" * max(0, size - 4))
    return register(StoreflowConfig(), path, checksum=False)[0].id


def test_subscribe_match_replay_unsubscribe(
    submit_deployment: str, listener: ListenerView, tmp_path: Path
) -> None:
    from prefect.server.events.schemas.automations import EventTrigger as ServerTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    unique = uuid.uuid4().hex[:6]
    code, stdout, stderr = invoke(
        "feed", "create", f"sheets-{unique}", "--name-regex", r"plate_[0-9]+\.csv",
        "--size-min", "10", "--size-max", "1000", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    feed = json.loads(stdout)
    code, stdout, stderr = invoke("feed", "subscribe", feed["name"], listener.name, "--json")
    assert code == 0, stderr
    subscription = json.loads(stdout)
    assert subscription["created"] and subscription["automation_id"]
    name = feed_steps.automation_name(feed["name"], listener.name)
    made = automations_named(name)
    assert [str(a.id) for a in made] == [subscription["automation_id"]]
    assert made[0].enabled
    action = made[0].actions[0]
    assert str(action.deployment_id) == submit_deployment
    assert action.parameters["feed"] == str(feed["id"])
    with session_scope(StoreflowConfig().database_url) as session:
        assert feeds.find(session, feed["id"]).subscriptions[0].listener_id == listener.id
    code, stdout, _ = invoke("listener", "show", listener.name, "--json")
    assert json.loads(stdout)["feeds"] == 1

    matcher = FeedMatcher(StoreflowConfig())
    hit = write(tmp_path / "d", "plate_7.csv", 200)
    miss_name = write(tmp_path / "d", "plate_x.csv", 200)
    miss_size = write(tmp_path / "d", "plate_8.csv", 5000)
    assert matcher.handle(hit).events == 1
    assert matcher.handle(miss_name).events == 0
    assert matcher.handle(miss_size).events == 0
    # A replayed event and a restarted matcher announce nothing again.
    assert matcher.handle(hit).events == 0
    assert FeedMatcher(StoreflowConfig()).handle(hit).events == 0

    events = matched_events(feed["name"])
    assert len(events) == 1
    event = events[0]
    assert event.resource["storeflow.file.id"] == str(hit)
    assert listeners_named(event) == [f"storeflow.listener.{listener.id}"]
    # Prefect's own trigger matching selects it (and not for another listener).
    trigger = ServerTrigger.model_validate(made[0].trigger.model_dump(mode="json"))
    received = ReceivedEvent.model_validate(event.model_dump(mode="json"))
    assert trigger.covers(received)
    other = made[0].trigger.model_dump(mode="json")
    other["match_related"]["prefect.resource.id"] = "storeflow.listener.999999"
    assert not ServerTrigger.model_validate(other).covers(received)

    code, _, stderr = invoke("feed", "unsubscribe", feed["name"], listener.name)
    assert code == 0, stderr
    assert automations_named(name) == []
    code, stdout, _ = invoke("listener", "show", listener.name, "--json")
    assert json.loads(stdout)["feeds"] == 0


def test_feed_delete_removes_its_automations(
    submit_deployment: str, listener: ListenerView
) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    assert invoke("feed", "create", name, "--mime", "text/*")[0] == 0
    assert invoke("feed", "subscribe", name, listener.name)[0] == 0
    assert len(automations_named(feed_steps.automation_name(name, listener.name))) == 1
    assert invoke("feed", "delete", name)[0] == 0
    assert automations_named(feed_steps.automation_name(name, listener.name)) == []


def test_manual_subscription_execute_and_counts(
    submit_deployment: str, listener: ListenerView, tmp_path: Path
) -> None:
    name = f"manual-{uuid.uuid4().hex[:6]}"
    for i in range(3):
        write(tmp_path / "m", f"run_{i}.csv", 50)
    write(tmp_path / "m", "other.bin", 50)
    assert invoke("feed", "create", name, "--name-regex", r"run_.*")[0] == 0
    code, stdout, _ = invoke("feed", "subscribe", name, listener.name, "--no-auto", "--json")
    assert code == 0 and json.loads(stdout)["automation_id"] is None
    assert automations_named(feed_steps.automation_name(name, listener.name)) == []
    # No automation: the matcher announces nothing for it.
    assert FeedMatcher(StoreflowConfig()).handle(1).events == 0

    code, stdout, _ = invoke("feed", "execute", name, listener.name, "--limit", "2", "--json")
    assert code == 0 and json.loads(stdout) == {"sent": 2}
    code, stdout, _ = invoke("feed", "execute", name, listener.name, "--json")
    assert json.loads(stdout) == {"sent": 1}
    code, stdout, _ = invoke("feed", "execute", name, listener.name, "--json")
    assert json.loads(stdout) == {"sent": 0}
    code, stdout, _ = invoke("feed", "counts", name, listener.name, "--json")
    counts = json.loads(stdout)
    # Runs made, not started (no worker): sent, none has a submission record yet.
    assert counts["total"] == 3 and counts["not_submitted"] == 0
    code, stdout, _ = invoke("feed", "execute", name, listener.name, "--force-all", "--json")
    assert json.loads(stdout) == {"sent": 3}
    code, _, stderr = invoke("feed", "execute", name, listener.name, "--skip", "-1")
    assert code == 2 and "--skip" in stderr


def test_listener_delete_removes_its_subscriptions(
    submit_deployment: str, listener: ListenerView
) -> None:
    name = f"kept-{uuid.uuid4().hex[:6]}"
    assert invoke("feed", "create", name)[0] == 0
    assert invoke("feed", "subscribe", name, listener.name)[0] == 0
    assert invoke("listener", "delete", listener.name)[0] == 0
    assert automations_named(feed_steps.automation_name(name, listener.name)) == []
    code, stdout, _ = invoke("feed", "show", name, "--json")
    assert code == 0 and json.loads(stdout)["subscriptions"] == []


def test_a_match_no_run_holds_is_sent_by_execute_and_the_counts_add_up(
    submit_deployment: str, listener: ListenerView, tmp_path: Path
) -> None:
    """A file the matcher claimed whose event started no run (the automation was off,
    or the matcher stopped before its event left) is not lost: execute sends it."""
    name = f"late-{uuid.uuid4().hex[:6]}"
    assert invoke("feed", "create", name, "--name-regex", r"late_[0-9]\.csv")[0] == 0
    assert invoke("feed", "subscribe", name, listener.name)[0] == 0
    matched = write(tmp_path / "l", "late_1.csv", 50)
    unmatched_yet = write(tmp_path / "l", "late_2.csv", 50)
    assert FeedMatcher(StoreflowConfig()).handle(matched).deliveries == 1

    def counts() -> dict[str, int]:
        code, stdout, stderr = invoke("feed", "counts", name, listener.name, "--json")
        assert code == 0, stderr
        found: dict[str, int] = json.loads(stdout)
        return found

    # No worker here: no run starts, so no run holds either file.
    assert counts() == {
        "total": 2, "success": 0, "failure": 0, "submitted": 0, "not_submitted": 2,
        "pending_approval": 0,
    }  # fmt: skip
    code, stdout, _ = invoke("feed", "execute", name, listener.name, "--json")
    assert code == 0 and json.loads(stdout) == {"sent": 2}
    with session_scope(StoreflowConfig().database_url) as session:
        held = feeds.delivered(session, feeds.find(session, name).id, listener.id)
    assert held == {str(matched), str(unmatched_yet)}
    assert counts()["submitted"] == 2 and counts()["not_submitted"] == 0
    code, stdout, _ = invoke("feed", "execute", name, listener.name, "--json")
    assert json.loads(stdout) == {"sent": 0}
