"""Submissions are flow runs: the job on the wire, replies driving the run's state.

The listener's side is played here over the real broker, in pyclowder's wire form
(tests/listeners/test_pyclowder.py runs the stock extractor itself).
"""

import json
import time
from typing import Any
from uuid import UUID

import pika
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.client.schemas.objects import State

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.submissions import submit
from storeflow.models import api_keys
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submission_repository import SubmissionView
from storeflow.models.submissions import SubmissionStatus
from storeflow.services.status import StatusConsumer
from storeflow.tasks.submissions import dataset_id
from tests.listeners.broker import URL, publish, wait_for
from tests.listeners.conftest import Wire


def take_job(queue: str, timeout: float = 10) -> tuple[dict[str, Any], pika.BasicProperties]:
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                return json.loads(body), properties
            time.sleep(0.05)
    raise AssertionError(f"no job on {queue}")


def queue_depth(queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        return int(connection.channel().queue_declare(queue, durable=True).method.message_count)


def reply(wire: Wire, job: dict[str, Any], kind: str, message: str, **extra: Any) -> None:
    """A status message exactly as pyclowder's RabbitMQHandler sends it."""
    body = {
        "file_id": job["id"],
        "extractor_id": "counter",
        "job_id": job["job_id"],
        "status": f"StatusMessage.{kind}: {message}",
        "start": "2026-01-01T00:00:00+00:00",
        "message_type": f"StatusMessage.{kind}",
        "message": message,
        **extra,
    }
    publish("", wire.reply_queue, body, delivery_mode=2, correlation_id=job["job_id"])


def run_state(run_id: str) -> State[Any]:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    assert state is not None
    return state


def final(run_id: str, timeout: float = 60) -> State[Any]:
    return wait_for(
        lambda: ((s := run_state(run_id)).is_final() and s) or None, timeout, "the run's end"
    )


def submission(run_id: str) -> SubmissionView:
    with session_scope(StoreflowConfig().database_url) as session:
        return submissions.get(session, run_id)


def test_a_submission_is_a_run_that_waits_without_a_process_and_ends_success(
    listener: ListenerView, text_file: FileView, wire: Wire, status_consumer: StatusConsumer
) -> None:
    state = submit(
        listener=listener.name,
        resource=str(text_file.id),
        parameters={"lang": "fr"},
        origin="CLI",
        return_state=True,
    )
    # The run is over as a process: parked, Submitted, while the job waits.
    assert state.name == "Submitted" and state.is_paused()
    run_id = str(state.state_details.flow_run_id)
    assert run_state(run_id).name == "Submitted"

    job, properties = take_job(listener.queue)
    assert properties.reply_to == wire.reply_queue and properties.correlation_id == run_id
    assert properties.delivery_mode == 2
    assert job["host"] == wire.api_url and job["job_id"] == run_id
    assert job["id"] == str(text_file.id) and job["filename"] == "words.txt"
    assert job["fileSize"] == text_file.size and job["retry_count"] == 0
    assert job["datasetId"] == dataset_id(text_file.dataset)
    assert job["resource_type"] == "file" and job["parameters"] == {"lang": "fr"}
    assert job["flags"] == "" and job["secretKey"]
    with session_scope(StoreflowConfig().database_url) as session:
        grant = api_keys.check(session, job["secretKey"])
        assert grant.submission_id == run_id and grant.file_id == text_file.id

    reply(wire, job, "start", "Started processing.")
    reply(wire, job, "processing", "counting words")
    reply(wire, job, "retry", "(#1) flaky")  # pyclowder's retry: still running
    reply(wire, job, "done", "Done processing.")
    ended = final(run_id)
    assert ended.type.value == "COMPLETED" and ended.name == "Success"

    # A late or duplicate message never changes a terminal status.
    reply(wire, job, "error", "too late")
    wait_for(lambda: status_consumer.ignored >= 1, what="the late error to be ignored")
    done = submission(run_id)
    assert done.status is SubmissionStatus.SUCCESS and run_state(run_id).name == "Success"
    assert done.origin == "CLI" and done.listener == listener.name
    assert done.started_at is not None and done.finished_at is not None
    assert [e.kind for e in done.events] == [
        "storeflow.submitted",
        "StatusMessage.start",
        "StatusMessage.processing",
        "StatusMessage.retry",
        "StatusMessage.done",
    ]
    assert done.events[-1].status == "SUCCESS" and done.events[-1].progress == 100
    with (
        session_scope(StoreflowConfig().database_url) as session,
        pytest.raises(api_keys.Unauthorized, match="revoked"),
    ):
        api_keys.check(session, job["secretKey"])

    # The run shows the listener's events: progress and events artifacts.
    assert status_consumer.mirror.wait_idle()
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]))
        )
    progress = [a for a in artifacts if a.type == "progress"]
    tables = sorted((a for a in artifacts if a.type == "table"), key=lambda a: a.created or 0)
    assert progress and progress[0].data == 100.0
    assert tables and "counting words" in str(tables[-1].data)
    assert "Done processing." in str(tables[-1].data)


def test_an_error_reply_ends_the_run_failure_with_its_message(
    listener: ListenerView, text_file: FileView, wire: Wire, status_consumer: StatusConsumer
) -> None:
    state = submit(listener=listener.name, resource=text_file.path, return_state=True)
    run_id = str(state.state_details.flow_run_id)
    job, _ = take_job(listener.queue)
    reply(wire, job, "start", "Started processing.")
    reply(wire, job, "error", "boom: no such word")
    ended = final(run_id)
    assert ended.type.value == "FAILED" and ended.name == "Failure"
    assert ended.message == "boom: no such word"
    assert submission(run_id).status is SubmissionStatus.FAILURE


def test_a_bad_request_is_refused_and_sends_nothing(
    listener: ListenerView, text_file: FileView, wire: Wire
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"parameters": {"colour": "red"}}, "parameters.colour: not a parameter of"),
        ({"parameters": {"lang": "de"}}, "parameters.lang: 'de' is not one of"),
        ({"resource": "424242"}, "resource: file #424242 is not in the catalog"),
        ({"listener": "nobody"}, "listener: listener 'nobody' does not exist"),
        ({"origin": "fax"}, "origin: 'fax' is not one of"),
    ]
    for change, reason in cases:
        arguments: dict[str, Any] = {"listener": listener.name, "resource": str(text_file.id)}
        arguments.update(change)
        state = submit(**arguments, return_state=True)
        assert state.name == "Refused" and state.is_failed(), change
        assert state.message is not None and state.message.startswith(reason), state.message
    assert queue_depth(listener.queue) == 0
    with session_scope(StoreflowConfig().database_url) as session:
        assert submissions.list_submissions(session) == []


def test_a_silent_listener_ends_failure_after_the_timeout(
    listener: ListenerView, text_file: FileView, wire: Wire, status_consumer: StatusConsumer
) -> None:
    state = submit(
        listener=listener.name, resource=str(text_file.id), timeout_seconds=1, return_state=True
    )
    run_id = str(state.state_details.flow_run_id)
    take_job(listener.queue)  # taken, never answered: the listener died mid-job
    ended = final(run_id, timeout=60)
    assert ended.name == "Failure" and "within 1 s" in (ended.message or "")
    assert submission(run_id).status is SubmissionStatus.FAILURE


def test_malformed_replies_are_dropped_and_the_consumer_goes_on(
    listener: ListenerView, text_file: FileView, wire: Wire, status_consumer: StatusConsumer
) -> None:
    publish("", wire.reply_queue, b"{{{")
    publish("", wire.reply_queue, {"message_type": "StatusMessage.nonsense", "job_id": "x"})
    publish("", wire.reply_queue, {"message_type": "StatusMessage.done", "job_id": "unknown"})
    state = submit(listener=listener.name, resource=str(text_file.id), return_state=True)
    run_id = str(state.state_details.flow_run_id)
    job, _ = take_job(listener.queue)
    reply(wire, job, "done", "Done processing.")
    assert final(run_id).name == "Success"
    assert status_consumer.dropped == 3
