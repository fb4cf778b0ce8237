"""The `feed-counts` flow after a mixed run: successes, a failing file, one still
running, one pending approval, one not submitted; the counts are exact, the same as
`storeflow feed counts`, and written as the table artifact under its stable key."""

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storeflow.blocks.config import StoreflowConfig
from storeflow.cli.app import app
from storeflow.flows.feeds import counts_key, feed_counts
from storeflow.flows.submissions import submit
from storeflow.models import feed_repository as feeds
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submissions import Origin, SubmissionStatus
from storeflow.tasks.catalog import register
from storeflow.tasks.submissions import DONE, ERROR, Reply, record_replies
from tests.listeners.broker import delete_queues, unique
from tests.listeners.conftest import Wire, make_listener

runner = CliRunner()


@pytest.fixture
def listener(wire: Wire) -> Iterator[ListenerView]:
    """A listener; `wire` sets the broker settings a submit run publishes its job with."""
    made = make_listener(unique("counted"))
    yield made
    delete_queues(made.queue)


def put(folder: Path, name: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("a,b\n1,2\n")
    return register(StoreflowConfig(), folder / name, checksum=False)[0].id


def sent(feed: str, listener: ListenerView, file_id: int) -> str:
    """A real submission of the file for the feed (the flow run an automation starts):
    its delivery bound, the job on the broker; its id."""
    state = submit(
        listener=str(listener.id), resource=str(file_id), origin="feed", feed=feed,
        return_state=True,
    )  # fmt: skip
    assert state.name == "Submitted", state.message
    return str(state.state_details.flow_run_id)


def reply(submission_id: str, kind: str, text: str) -> None:
    """The listener's last word, recorded as the status consumer records it."""
    with session_scope(StoreflowConfig().database_url) as session:
        record_replies(session, [(submission_id, Reply(message_type=kind, message=text))])


def pending(feed_id: int, listener: ListenerView, file_id: int) -> None:
    """A submission waiting for approval, as the approval feed's run records it before
    it suspends (suspending needs a deployment and a worker: tests/e2e has that)."""
    run_id = str(uuid.uuid4())
    with session_scope(StoreflowConfig().database_url) as session:
        assert feeds.bind_submission(session, feed_id, listener.id, str(file_id), run_id)
        submissions.create(
            session,
            run_id,
            listener_id=listener.id,
            resource_type="file",
            resource_id=str(file_id),
            origin=Origin.FEED,
            parameters={},
            timeout_seconds=600,
            status=SubmissionStatus.PENDING_APPROVAL,
        )


def artifact_rows(key: str) -> list[dict[str, Any]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert len(found) == 1, found
    data = found[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    assert isinstance(rows, list)
    return rows


def test_counts_after_a_mixed_run_are_exact(listener: ListenerView, tmp_path: Path) -> None:
    name = f"sheets-{uuid.uuid4().hex[:6]}"
    created = runner.invoke(app, ["feed", "create", name, "--name-regex", r".*\.csv", "--json"])
    assert created.exit_code == 0, created.stderr
    feed_id = json.loads(created.stdout)["id"]
    folder = tmp_path / "plates"
    ok = [put(folder, f"ok_{i}.csv") for i in range(3)]
    bad, running, waiting = put(folder, "bad.csv"), put(folder, "running.csv"), put(folder, "w.csv")
    put(folder, "never.csv")  # matches, never submitted
    put(folder, "notes.txt")  # not the feed's

    for file_id in ok:
        reply(sent(name, listener, file_id), DONE, "done")
    reply(sent(name, listener, bad), ERROR, "could not parse")
    sent(name, listener, running)  # the listener has not answered yet
    pending(feed_id, listener, waiting)
    # A second run for a delivered file is a duplicate: it counts nothing twice.
    again = submit(
        listener=str(listener.id), resource=str(ok[0]), origin="feed", feed=name,
        return_state=True,
    )  # fmt: skip
    assert again.name == "Duplicate"

    expected = {
        "total": 7,
        "success": 3,
        "failure": 1,
        "submitted": 1,
        "not_submitted": 1,
        "pending_approval": 1,
    }
    state = feed_counts(feed=name, listener=listener.name, return_state=True)
    assert state.name == "Counted", state.message
    assert state.result() == expected
    assert state.message == (
        "7 total, 3 success, 1 failure, 1 submitted, 1 not submitted, 1 pending approval"
    )
    rows = artifact_rows(counts_key(name, listener.name))
    assert rows == [{"feed": name, "listener": listener.name, **expected}]
    shown = runner.invoke(app, ["feed", "counts", name, listener.name, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout) == expected


def test_counts_of_an_unknown_feed_or_a_dataset_feed_are_refused(listener: ListenerView) -> None:
    state = feed_counts(feed="no-such-feed", listener=listener.name, return_state=True)
    assert state.name == "Refused" and "no-such-feed" in str(state.message)
    name = f"folders-{uuid.uuid4().hex[:6]}"
    criteria = json.dumps({"files": [{"name": ".*"}]})
    created = runner.invoke(
        app, ["feed", "create", name, "--kind", "dataset", "--criteria", criteria]
    )
    assert created.exit_code == 0, created.stderr
    state = feed_counts(feed=name, listener=listener.name, return_state=True)
    assert state.name == "Refused" and "dataset feed" in str(state.message)


def test_the_deployment_is_declared_and_its_parameters_described() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    document = yaml.safe_load((root / "prefect.yaml").read_text())
    declared = {d["name"]: d for d in document["deployments"]}
    assert declared["feed-counts"]["entrypoint"] == "flows/feeds.py:feed_counts"
    assert feed_counts.name == "feed-counts"
    properties = feed_counts.parameters.model_dump()["properties"]
    assert sorted(properties) == ["config", "feed", "listener"]
    assert all(field.get("description") for field in properties.values()), properties
