"""Feeds end to end: a real `prefect server start`, the `submit` deployment with a
process worker, `storeflow listeners serve` (watcher, feed matcher, consumers, API) and
the stock pyclowder word-count extractor, all as a user runs them.

Files are written into a space and nothing registers them by hand: the watcher finds
them, the matcher emits `storeflow.feed.matched`, the subscription's automation runs
`submit`, the extractor answers.  Every process is stopped by its PID.
"""

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from storeflow.flows.feeds import counts_key
from storeflow.models import catalog_repository as catalog
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.errors import NotFound
from storeflow.models.feeds import FeedDeliveryRow
from storeflow.models.submission_repository import SubmissionView
from storeflow.models.submissions import SubmissionStatus
from tests.e2e.conftest import ROOT, STOREFLOW, storeflow
from tests.e2e.server import PREFECT, api, free_port, run_cli, started
from tests.listeners.broker import URL, delete_queues, unique, wait_for
from tests.listeners.extractor import ExtractorProcess
from tests.prefect_backend import scratch_database

pytestmark = pytest.mark.e2e

#: Seconds a file has to go from disk to a submission's end on a loaded machine.
END_TO_END = 300
#: Seconds for the server's triggers service to take an automation's change (it hears
#: of it by PostgreSQL NOTIFY; there is no API to ask whether it has).
TRIGGERS_TAKE_A_CHANGE = 5


@dataclass
class Stack:
    env: dict[str, str]
    api_url: str
    database_url: str
    spaces: Path
    extractor: ExtractorProcess
    jobs_log: Path
    logs: Path

    def cli(self, *args: str) -> Any:
        done = storeflow(self.env, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return json.loads(done.stdout) if "--json" in args else done.stdout

    def listener_id(self) -> int:
        with session_scope(self.database_url) as session:
            return listeners.find(session, self.extractor.name).id

    def file_id(self, path: Path, timeout: float = 60) -> int:
        def registered() -> int | None:
            with session_scope(self.database_url) as session:
                try:
                    return catalog.find(session, str(path)).id
                except NotFound:
                    return None

        return wait_for(registered, timeout, f"the watcher registering {path.name}")

    def submissions_of(self, file_id: int) -> list[SubmissionView]:
        with session_scope(self.database_url) as session:
            found = submissions.list_submissions(session, listener_id=self.listener_id())
        return [s for s in found if s.resource_id == str(file_id)]

    def one_submission(
        self, file_id: int, status: SubmissionStatus, timeout: float = END_TO_END
    ) -> SubmissionView:
        def reached() -> SubmissionView | None:
            found = self.submissions_of(file_id)
            assert len(found) <= 1, found
            return found[0] if found and found[0].status is status else None

        try:
            found = wait_for(reached, timeout, f"file #{file_id} reaching {status.value}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.tail()}") from None
        with session_scope(self.database_url) as session:
            return submissions.get(session, found.id)  # with its events

    def delivered(self, feed_id: int) -> dict[str, str | None]:
        with session_scope(self.database_url) as session:
            rows = session.execute(
                select(FeedDeliveryRow.resource, FeedDeliveryRow.submission_id).where(
                    FeedDeliveryRow.feed_id == feed_id
                )
            )
            return {str(resource): holder for resource, holder in rows}

    def run(self, run_id: str) -> dict[str, Any]:
        found: dict[str, Any] = api(f"{self.api_url}/flow_runs/{run_id}")
        return found

    def run_in(self, run_id: str, state_type: str, timeout: float = 120) -> dict[str, Any]:
        """The flow run once its state is of `state_type` (the run mirror sets a
        submission's run state a moment after the submission's own record)."""

        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["state"]["type"] == state_type else None

        try:
            return wait_for(reached, timeout, f"run {run_id} {state_type}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {self.run(run_id)['state']}\n{self.tail()}") from None

    def jobs_seen(self) -> list[str]:
        """The submission ids the extractor processed (one line per job it ran)."""
        return self.jobs_log.read_text().split() if self.jobs_log.exists() else []

    def tail(self) -> str:
        parts = [
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.logs.glob("*.log"))
        ]
        return "\n".join(parts) + f"\n--- extractor\n{self.extractor.output()[-3000:]}"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def stack(user_shell: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    """The submit deployment and a worker, `listeners serve` and the extractor."""
    port = free_port()
    names = {
        "STOREFLOW_REPLY_QUEUE": unique("storeflow.e2e-replies"),
        "STOREFLOW_HEARTBEAT_QUEUE": unique("storeflow.e2e-heartbeats"),
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    jobs_log = tmp_path / "jobs.log"
    with scratch_database("storeflow_e2e_feeds") as database:
        database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        env = {
            **user_shell,
            **names,
            "STOREFLOW_DATABASE_URL": database_url,
            "STOREFLOW_BROKER_URL": URL,
            "STOREFLOW_API_URL": f"http://127.0.0.1:{port}/",
            "PWD": str(ROOT),
        }
        run_cli(["work-pool", "create", "storeflow-process", "--type", "process"], env, ROOT)
        deployed = run_cli(
            ["--no-prompt", "deploy", "--name", "submit", "--name", "feed-counts"], env, ROOT
        )
        assert "submit" in deployed and "feed-counts" in deployed
        worker = [PREFECT, "worker", "start", "--pool", "storeflow-process", "--limit", "4"]
        serve = [STOREFLOW, "listeners", "serve"]
        extractor = ExtractorProcess(tmp_path / "extractor", unique("wordcount"), URL)
        extractor.env["WORDCOUNT_LOG"] = str(jobs_log)
        with (
            started(worker, env, logs / "worker.log", ROOT),
            started(serve, env, logs / "serve.log", ROOT),
        ):
            extractor.start()
            try:
                made = Stack(
                    env,
                    env["PREFECT_API_URL"],
                    database_url,
                    Path(env["STOREFLOW_HOME"]) / "storage" / "spaces",
                    extractor,
                    jobs_log,
                    logs,
                )
                wait_for(
                    lambda: _listed(database_url, extractor.name), 120, "the extractor's heartbeat"
                )
                yield made
            finally:
                extractor.stop()
                delete_queues(*names.values(), extractor.name, f"error.{extractor.name}")


def _listed(database_url: str, name: str) -> bool:
    try:
        with session_scope(database_url) as session:
            return bool(listeners.list_listeners(session, name=name))
    except Exception:  # the schema is made by whichever process opens it first
        return False


def set_automation(stack: Stack, automation_id: str, enabled: bool) -> None:
    """Switch a subscription's automation as the UI's toggle does (Prefect's API)."""
    api(f"{stack.api_url}/automations/{automation_id}", "PATCH", {"enabled": enabled})
    time.sleep(TRIGGERS_TAKE_A_CHANGE)


def feed_with_subscription(stack: Stack, name: str, *options: str) -> tuple[int, str]:
    """(feed id, its automation's id)."""
    feed = stack.cli("feed", "create", name, *options, "--json")
    subscribed = stack.cli("feed", "subscribe", name, stack.extractor.name, "--json")
    assert subscribed["automation_id"]
    time.sleep(TRIGGERS_TAKE_A_CHANGE)  # the new automation reaches the triggers service
    return int(feed["id"]), str(subscribed["automation_id"])


def test_feeds_drive_a_stock_extractor_through_a_real_server(stack: Stack) -> None:
    stack.cli("space", "create", "labdata", "--quota", "1G")
    space = stack.spaces / "labdata"
    assert space.is_dir()
    feed_id, automation_id = feed_with_subscription(
        stack, "plates", "--name-regex", r"plate_[0-9]+\.txt", "--size-min", "10",
        "--size-max", "10000",
    )  # fmt: skip

    # Two files the feed does not want (a name, a size), then one it does: the matcher
    # reads the events in order, so by the time the third is submitted the first two
    # were matched and claimed nothing.
    wrong_name = stack.file_id(write(space, "plate_x.txt", "one two three four\n"))
    too_big = stack.file_id(write(space, "plate_2.txt", "word " * 4000))
    wanted = stack.file_id(write(space, "plate_1.txt", "the quick brown fox\njumps\n"))
    done = stack.one_submission(wanted, SubmissionStatus.SUCCESS)
    assert stack.run_in(done.id, "COMPLETED")["state"]["name"] == "Success"
    assert "counted 5 words" in [e.message for e in done.events]
    assert stack.jobs_seen() == [done.id]
    assert stack.submissions_of(wrong_name) == [] and stack.submissions_of(too_big) == []
    assert stack.delivered(feed_id) == {str(wanted): done.id}

    # Switched off through the API: the next matching file is matched (its delivery
    # claimed, its event emitted) but nothing runs; switched on again, the one after is.
    set_automation(stack, automation_id, False)
    while_off = stack.file_id(write(space, "plate_3.txt", "three words here\n"))
    wait_for(lambda: str(while_off) in stack.delivered(feed_id), 120, "plate_3 matched")
    set_automation(stack, automation_id, True)
    after = stack.file_id(write(space, "plate_4.txt", "four words are here\n"))
    stack.one_submission(after, SubmissionStatus.SUCCESS)
    assert stack.submissions_of(while_off) == []
    assert stack.delivered(feed_id)[str(while_off)] is None
    # The file matched while off is not lost: counted not submitted, `execute` sends it.
    listener = stack.extractor.name
    assert stack.cli("feed", "counts", "plates", listener, "--json") == {
        "total": 3, "success": 2, "failure": 0, "submitted": 0, "not_submitted": 1,
        "pending_approval": 0,
    }  # fmt: skip
    assert stack.cli("feed", "execute", "plates", listener, "--json") == {"sent": 1}
    stack.one_submission(while_off, SubmissionStatus.SUCCESS)

    # An approval feed: the run waits, Paused, until approved; then it runs.
    feed_with_subscription(stack, "reviews", "--name-regex", r"review_[0-9]+\.txt", "--approval")
    first = stack.file_id(write(space, "review_1.txt", "please review this\n"))
    waiting = stack.one_submission(first, SubmissionStatus.PENDING_APPROVAL)
    stack.run_in(waiting.id, "PAUSED")
    assert waiting.id not in stack.jobs_seen()
    stack.cli("submission", "approve", waiting.id)
    approved = stack.one_submission(first, SubmissionStatus.SUCCESS)
    assert stack.run_in(approved.id, "COMPLETED")["state"]["name"] == "Success"
    assert stack.jobs_seen().count(approved.id) == 1

    # A rejected one ends Failed "Rejected" and never reaches the extractor.
    second = stack.file_id(write(space, "review_2.txt", "reject this one\n"))
    refused = stack.one_submission(second, SubmissionStatus.PENDING_APPROVAL)
    stack.run_in(refused.id, "PAUSED")
    stack.cli("submission", "reject", refused.id, "--reason", "not ours")
    final = stack.run_in(refused.id, "FAILED", END_TO_END)
    assert final["state"]["name"] == "Rejected", final["state"]
    rejected = stack.one_submission(second, SubmissionStatus.FAILURE)
    assert "storeflow.submitted" not in [e.kind for e in rejected.events]
    assert refused.id not in stack.jobs_seen()

    # The feed-counts deployment, run through the API, writes the counts as an artifact.
    deployment = api(f"{stack.api_url}/deployments/name/feed-counts/feed-counts")
    run = api(
        f"{stack.api_url}/deployments/{deployment['id']}/create_flow_run",
        "POST",
        {"parameters": {"feed": "plates", "listener": listener}},
    )
    counted = stack.run_in(str(run["id"]), "COMPLETED", END_TO_END)
    assert counted["state"]["name"] == "Counted"
    artifacts = api(
        f"{stack.api_url}/artifacts/filter",
        "POST",
        {"artifacts": {"key": {"any_": [counts_key("plates", listener)]}}},
    )
    assert [json.loads(a["data"]) for a in artifacts] == [
        [
            {"feed": "plates", "listener": listener, "total": 3, "success": 3, "failure": 0,
             "submitted": 0, "not_submitted": 0, "pending_approval": 0}
        ]
    ]  # fmt: skip
