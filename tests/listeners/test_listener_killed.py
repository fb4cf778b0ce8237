"""A stock pyclowder extractor killed (-9) while it works on a job: its submission
ends Failure after its timeout, never SUBMITTED forever.

The job was never acked, so RabbitMQ keeps it and hands it to the extractor when it
is started again.  What happens then is decided here:

- started after the timeout: the submission has ended, its key is revoked, so the
  redelivered job cannot download its file (401), never reaches the extractor's
  process_message, and pyclowder's retries end it in its error queue; its replies
  (start, retries, error) arrive after the end and are ignored.  It stays Failure.
- started before: the job had its file already (it may even have been processed, its
  `done` lost with the process), so the API refuses it the file again (409) and the
  submission ends Failure saying so, at once: at most once, never run twice.
"""

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pika
import pytest
from prefect.client.orchestration import get_client

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.submissions import submit
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submissions import SubmissionStatus
from storeflow.services.serve import Services
from storeflow.tasks.catalog import register
from storeflow.tasks.submissions import LOST_MESSAGE
from tests.listeners.broker import URL, delete_queues, unique, wait_for
from tests.listeners.conftest import serving
from tests.listeners.extractor import ExtractorProcess

TIMEOUT = 8


@pytest.fixture
def services(storeflow_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Services]:
    with serving(monkeypatch) as started:
        yield started


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ExtractorProcess]]:
    processes: list[ExtractorProcess] = []
    yield processes
    for process in processes:
        process.stop()
    if processes:
        delete_queues(processes[0].name, f"error.{processes[0].name}")


def listener_named(name: str) -> ListenerView:
    def probe() -> ListenerView | None:
        with session_scope(StoreflowConfig().database_url) as session:
            found = listeners.list_listeners(session, name=name)
        return found[0] if found else None

    return wait_for(probe, 60, f"a heartbeat from {name}")


def event_kinds(run_id: str) -> list[str]:
    with session_scope(StoreflowConfig().database_url) as session:
        return [e.kind for e in submissions.get(session, run_id).events]


def run_state(run_id: str) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(run_id)).state


def queue_depth(queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        declared = connection.channel().queue_declare(queue, durable=True)
        return int(declared.method.message_count)


def test_an_extractor_killed_mid_job_ends_failure_and_its_redelivered_job_changes_nothing(
    services: Services, started: list[ExtractorProcess], tmp_path: Path
) -> None:
    name = unique("wordcount")
    processed = tmp_path / "processed.txt"
    slow = ExtractorProcess(
        tmp_path / "first", name, URL, WORDCOUNT_LOG=str(processed), WORDCOUNT_SLEEP="600"
    ).start()
    started.append(slow)
    listener = listener_named(name)
    poem = tmp_path / "poem.txt"
    poem.write_text("the quick brown fox\n")
    file: FileView = register(StoreflowConfig(), poem)[0]

    state = submit(
        listener=listener.name,
        resource=str(file.id),
        timeout_seconds=TIMEOUT,
        return_state=True,
    )
    assert state.name == "Submitted", state.message
    run_id = str(state.state_details.flow_run_id)
    # It has the job (pyclowder said start and is downloading): kill it mid-job.
    wait_for(lambda: "StatusMessage.start" in event_kinds(run_id), 60, "the job's start")
    assert slow.process is not None
    os.kill(slow.process.pid, signal.SIGKILL)
    slow.process.wait(30)

    ended = wait_for(
        lambda: (s := run_state(run_id)) is not None and s.is_final() and s, 120, "the timeout"
    )
    assert ended.name == "Failure", ended
    assert f"no final reply from {listener.name} within {TIMEOUT} s" in (ended.message or "")
    assert processed.exists() is False  # killed before it finished anything

    # Started again (a service manager would): the unacked job comes back to it.
    ignored_before = services.statuses.ignored
    again = ExtractorProcess(tmp_path / "second", name, URL, WORDCOUNT_LOG=str(processed))
    started.append(again.start())
    wait_for(lambda: queue_depth(f"error.{name}") == 1, 180, "pyclowder to give the job up")
    assert queue_depth(name) == 0
    wait_for(lambda: services.statuses.ignored >= ignored_before + 12, 60, "the replies")

    with session_scope(StoreflowConfig().database_url) as session:
        done = submissions.get(session, run_id)
    assert done.status is SubmissionStatus.FAILURE
    assert done.events[-1].kind == "storeflow.timeout"  # nothing recorded after the end
    assert run_state(run_id).name == "Failure"
    assert processed.exists() is False  # the redelivered job never ran
    assert "401" in again.output()


def test_a_job_redelivered_before_its_timeout_is_refused_and_ends_failure_not_run_twice(
    services: Services, started: list[ExtractorProcess], tmp_path: Path
) -> None:
    """Killed after it had its file, started again at once: the broker hands it the same
    job, which may already have been processed (its `done` lost with the process).
    The API refuses the job its file a second time and the submission ends Failure,
    saying so, long before its timeout."""
    name = unique("wordcount")
    processed = tmp_path / "processed.txt"
    slow = ExtractorProcess(
        tmp_path / "first", name, URL, WORDCOUNT_LOG=str(processed), WORDCOUNT_SLEEP="600"
    ).start()
    started.append(slow)
    listener_named(name)
    poem = tmp_path / "poem.txt"
    poem.write_text("the quick brown fox\n")
    file: FileView = register(StoreflowConfig(), poem)[0]
    state = submit(listener=name, resource=str(file.id), timeout_seconds=3600, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    wait_for(lambda: "storeflow.download" in event_kinds(run_id), 60, "the file's download")
    assert slow.process is not None
    os.kill(slow.process.pid, signal.SIGKILL)
    slow.process.wait(30)

    again = ExtractorProcess(tmp_path / "second", name, URL, WORDCOUNT_LOG=str(processed))
    started.append(again.start())
    ended = wait_for(
        lambda: (s := run_state(run_id)) is not None and s.is_final() and s, 180, "the refusal"
    )
    assert ended.name == "Failure"
    assert ended.message == LOST_MESSAGE.format(what="file")
    kinds = event_kinds(run_id)
    assert kinds.count("storeflow.download") == 1 and "storeflow.redelivered" in kinds
    wait_for(lambda: queue_depth(f"error.{name}") == 1, 180, "pyclowder to give the job up")
    assert processed.exists() is False  # neither process ran it
    assert "409" in again.output()
