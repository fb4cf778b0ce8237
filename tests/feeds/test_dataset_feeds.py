"""Dataset feeds: a folder fires once when its files together meet every requirement
(when the last required file arrives), not again for a replay, a restarted matcher or
a file that meets none, and again when a required file changes.  The run the event
starts binds the folder's delivery: a second run for it sends nothing."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.flows.submissions import submit
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
from tests.listeners.broker import URL, delete_queues, unique
from tests.listeners.conftest import make_listener

runner = CliRunner()


@pytest.fixture
def listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[ListenerView]:
    """A listener, and the broker settings a submit run publishes its job with."""
    reply_queue = unique("storeflow.test-replies")
    monkeypatch.setenv("STOREFLOW_BROKER_URL", URL)
    monkeypatch.setenv("STOREFLOW_REPLY_QUEUE", reply_queue)
    monkeypatch.setenv("STOREFLOW_API_URL", "http://127.0.0.1:9/")
    made = make_listener(unique("datasets"))
    yield made
    delete_queues(made.queue, reply_queue)


def put(folder: Path, name: str, text: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return register(StoreflowConfig(), path, checksum=True)[0].id


def dataset_feed(listener: ListenerView) -> dict[str, object]:
    requirements = {"files": [{"name": r"raw_[0-9]+\.csv"}, {"name": r"meta\.json"}]}
    result = runner.invoke(
        app,
        ["feed", "create", f"runs-{uuid.uuid4().hex[:6]}", "--kind", "dataset",
         "--criteria", json.dumps(requirements), "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    feed: dict[str, object] = json.loads(result.stdout)
    assert feed["kind"] == "dataset"
    subscribed = runner.invoke(app, ["feed", "subscribe", str(feed["name"]), listener.name])
    assert subscribed.exit_code == 0, subscribed.stderr
    return feed


def test_a_folder_fires_once_when_its_last_required_file_arrives(
    submit_deployment: str,  # noqa: F811
    listener: ListenerView,
    tmp_path: Path,
) -> None:
    feed = dataset_feed(listener)
    matcher = FeedMatcher(StoreflowConfig())
    folder, elsewhere = tmp_path / "run-1", tmp_path / "run-2"

    assert matcher.handle(put(folder, "raw_1.csv", "a,b\n1,2\n")).events == 0
    assert matcher.handle(put(folder, "notes.txt", "nothing required")).events == 0
    assert matcher.handle(put(elsewhere, "meta.json", "{}")).events == 0  # another folder
    last = put(folder, "meta.json", '{"instrument": "sem"}')
    assert matcher.handle(last).events == 1
    # A replayed event, a restarted matcher, a second required-looking file arriving in
    # the other folder, or a file that meets no requirement: nothing more.
    assert matcher.handle(last).events == 0
    assert FeedMatcher(StoreflowConfig()).handle(last).events == 0
    assert matcher.handle(put(folder, "run.log", "log line")).events == 0
    assert matcher.handle(put(elsewhere, "raw_9.txt", "not csv")).events == 0

    events = matched_events(str(feed["name"]))
    assert len(events) == 1
    assert events[0].resource["storeflow.dataset"] == str(folder.resolve())
    assert events[0].resource["storeflow.file.id"] == str(last)
    assert listeners_named(events[0]) == [f"storeflow.listener.{listener.id}"]

    # The run the automation starts takes the folder's delivery; a second one for the
    # same event (a duplicate action) sends nothing.
    parameters = {
        "listener": str(listener.id),
        "resource": str(last),
        "origin": "feed",
        "feed": str(feed["id"]),
    }
    first = submit(**parameters, return_state=True)
    assert first.name == "Submitted", first.message
    again = submit(**parameters, return_state=True)
    assert again.name == "Duplicate", again.message
    with session_scope(StoreflowConfig().database_url) as session:
        rows = session.query(FeedDeliveryRow).filter_by(feed_id=feed["id"]).all()
        assert [(r.resource.rpartition("@")[0], r.submission_id) for r in rows] == [
            (f"dataset:{folder.resolve()}", str(first.state_details.flow_run_id))
        ]

    # A required file changes: the dataset is another version, and fires again, once.
    changed = put(folder, "raw_1.csv", "a,b\n1,2\n3,4\n")
    assert matcher.handle(changed).events == 1
    assert matcher.handle(changed).events == 0
    # A second required file of a kind already met is a change too.
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
