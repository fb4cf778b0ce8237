"""Dataset feeds: a folder fires once when its files together meet every requirement
(when the last required file arrives), not again for a replay, a restarted matcher or
a file that meets none, and again when a required file changes.  The run the event
starts submits the dataset to a listener that processes datasets (else the file that
completed it) and binds the folder's delivery: a second run for it sends nothing."""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.flows.submissions import submit
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.feed_criteria import MatchFile, parse_criteria
from storeflow.models.feeds import FeedDeliveryRow
from storeflow.models.listener_repository import ListenerView
from storeflow.services.matcher import FeedMatcher
from storeflow.tasks import feeds as feed_steps
from storeflow.tasks.catalog import register
from tests.feeds.test_subscriptions import (  # noqa: F401
    listeners_named,
    matched_events,
    submit_deployment,
)
from tests.listeners.broker import delete_queues, unique
from tests.listeners.conftest import Wire, make_listener

runner = CliRunner()


@dataclass
class Listeners:
    datasets: ListenerView  # its extractor_info processes datasets: gets the folder
    files: ListenerView  # processes files only: gets the file that completed it


@pytest.fixture
def subscribers(wire: Wire) -> Iterator[Listeners]:
    """Two listeners; `wire` sets the broker settings a submit run publishes its job with."""
    made = Listeners(
        make_listener(unique("datasets"), process={"dataset": ["*"]}),
        make_listener(unique("files"), process={"file": ["*"]}),
    )
    yield made
    delete_queues(made.datasets.queue, made.files.queue)


def put(folder: Path, name: str, text: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return register(StoreflowConfig(), path, checksum=True)[0].id


def dataset_feed(*subscribers: ListenerView) -> dict[str, Any]:
    requirements = {"files": [{"name": r"raw_[0-9]+\.csv"}, {"name": r"meta\.json"}]}
    result = runner.invoke(
        app,
        ["feed", "create", f"runs-{uuid.uuid4().hex[:6]}", "--kind", "dataset",
         "--criteria", json.dumps(requirements), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    feed: dict[str, Any] = json.loads(result.stdout)
    assert feed["kind"] == "dataset"
    for listener in subscribers:
        subscribed = runner.invoke(app, ["feed", "subscribe", feed["name"], listener.name])
        assert subscribed.exit_code == 0, subscribed.stderr
    return feed


def run_parameters(feed: dict[str, Any], listener: ListenerView) -> dict[str, Any]:
    """What the subscription's automation passes to `submit` (templates unrendered)."""
    from prefect.client.orchestration import get_client
    from prefect.events.actions import RunDeployment

    name = feed_steps.automation_name(feed["name"], listener.name)
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(name)
    action = automation.actions[0]
    assert isinstance(action, RunDeployment) and action.parameters is not None
    return action.parameters


def test_a_folder_fires_once_when_its_last_required_file_arrives(
    submit_deployment: str,  # noqa: F811
    subscribers: Listeners,
    tmp_path: Path,
) -> None:
    feed = dataset_feed(subscribers.datasets, subscribers.files)
    matcher = FeedMatcher(StoreflowConfig())
    folder, elsewhere = tmp_path / "run-1", tmp_path / "run-2"

    assert matcher.handle(put(folder, "raw_1.csv", "a,b\n1,2\n")).events == 0
    assert matcher.handle(put(folder, "notes.txt", "nothing required")).events == 0
    assert matcher.handle(put(elsewhere, "meta.json", "{}")).events == 0  # another folder
    last = put(folder, "meta.json", '{"instrument": "sem"}')
    assert matcher.handle(last).events == 1
    # A replayed event, a restarted matcher, a file that meets no requirement, files in
    # another folder: nothing more.
    assert matcher.handle(last).events == 0
    assert FeedMatcher(StoreflowConfig()).handle(last).events == 0
    assert matcher.handle(put(folder, "run.log", "log line")).events == 0
    assert matcher.handle(put(elsewhere, "raw_9.txt", "not csv")).events == 0

    events = matched_events(feed["name"])
    assert len(events) == 1
    assert events[0].resource["storeflow.dataset"] == str(folder.resolve())
    assert events[0].resource["storeflow.file.id"] == str(last)
    assert sorted(listeners_named(events[0])) == sorted(
        f"storeflow.listener.{s.id}" for s in (subscribers.datasets, subscribers.files)
    )

    # Each automation submits what its listener takes: the dataset (its folder, from
    # the event's label), or the file that completed it.
    by_dataset = run_parameters(feed, subscribers.datasets)
    assert by_dataset["resource_type"] == "dataset"
    assert by_dataset["resource"]["template"] == "{{ event.resource['storeflow.dataset'] }}"
    by_file = run_parameters(feed, subscribers.files)
    assert by_file["resource_type"] == "file"
    assert by_file["resource"]["template"] == "{{ event.resource['storeflow.file.id'] }}"

    # The runs (with the values the server renders) take the folder's delivery; a
    # second run for the same delivery sends nothing.
    runs = {
        subscribers.datasets.id: {**by_dataset, "resource": str(folder.resolve())},
        subscribers.files.id: {**by_file, "resource": str(last)},
    }
    held = {}
    for listener_id, parameters in runs.items():
        first = submit(**parameters, return_state=True)
        assert first.name == "Submitted", first.message
        held[listener_id] = str(first.state_details.flow_run_id)
        again = submit(**parameters, return_state=True)
        assert again.name == "Duplicate", again.message
    with session_scope(StoreflowConfig().database_url) as session:
        rows = session.query(FeedDeliveryRow).filter_by(feed_id=feed["id"]).all()
        assert {(r.listener_id, r.resource.rpartition("@")[0], r.submission_id) for r in rows} == {
            (listener_id, f"dataset:{folder.resolve()}", run_id)
            for listener_id, run_id in held.items()
        }
        sent = submissions.get(session, held[subscribers.datasets.id], events=False)
        assert (sent.resource_type, sent.resource_id) == ("dataset", str(folder.resolve()))

    # A required file changes: the dataset is another version, and fires again, once.
    changed = put(folder, "raw_1.csv", "a,b\n1,2\n3,4\n")
    assert matcher.handle(changed).events == 1
    assert matcher.handle(changed).events == 0
    # A second file meeting a requirement already met is a change too.
    assert matcher.handle(put(folder, "raw_2.csv", "c\n")).events == 1


def test_the_version_needs_every_requirement_and_follows_the_required_files() -> None:
    requirements = [parse_criteria({"name": r".*\.csv"}), parse_criteria({"mime": "text/*"})]

    def file(i: int, name: str, mime: str, stamp: str = "1") -> MatchFile:
        return MatchFile(i, name, f"/d/{name}", "s", "/d", mime, 1, "u", "g", {}, stamp)

    csv = file(1, "a.csv", "application/octet-stream")
    text = file(2, "b.txt", "text/plain")
    other = file(3, "c.bin", "application/zip")
    assert feed_steps.dataset_version(requirements, [csv, other]) is None
    version = feed_steps.dataset_version(requirements, [csv, text])
    assert version is not None
    # One file meeting both is enough; a file meeting none does not change the version.
    assert feed_steps.dataset_version(requirements, [file(4, "x.csv", "text/csv")])
    assert feed_steps.dataset_version(requirements, [csv, text, other]) == version
    assert feed_steps.dataset_version(requirements, [csv, file(2, "b.txt", "text/plain", "2")])
    assert (
        feed_steps.dataset_version(requirements, [csv, file(2, "b.txt", "text/plain", "2")])
        != version
    )
