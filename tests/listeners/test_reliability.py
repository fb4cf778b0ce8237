"""Reliability on the real broker: the consumers survive losing their connections
(closed by the broker, as in a restart) and no submission is lost or decided twice."""

import json
import subprocess
import threading
from typing import Any

import pika
import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.submissions import submit
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.db import session_scope
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submissions import SubmissionStatus
from storeflow.services.broker import Consumer
from storeflow.services.status import StatusConsumer
from tests.listeners.broker import URL, wait_for
from tests.listeners.conftest import Wire


def close_connections(name: str) -> int:
    """Have the broker close every connection whose client calls itself `name` (only
    this test's: the broker is shared)."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    closed = 0
    for line in listed.splitlines():
        if f'{{"connection_name","{name}"}}' in line:
            connection = line.split("\t", 1)[0]
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", connection, "test: broker restart"],
                timeout=60,
                check=True,
            )
            closed += 1
    return closed


def playing_listener(queue: str, reply_queue: str, stop: threading.Event) -> list[str]:
    """The listener's side: answer each job start/done in pyclowder's form; returns the
    job ids it processed (a list: a job run twice would show twice)."""
    processed: list[str] = []

    def run() -> None:
        with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
            channel = connection.channel()
            channel.queue_declare(queue, durable=True)
            while not stop.is_set():
                method, properties, body = channel.basic_get(queue)
                if method is None:
                    connection.sleep(0.02)
                    continue
                job = json.loads(body)
                for kind, text in (("start", "Started processing."), ("done", "Done.")):
                    reply: dict[str, Any] = {
                        "file_id": job["id"],
                        "extractor_id": queue,
                        "job_id": job["job_id"],
                        "status": f"StatusMessage.{kind}: {text}",
                        "start": "2026-01-01T00:00:00",
                        "message_type": f"StatusMessage.{kind}",
                        "message": text,
                    }
                    channel.basic_publish(
                        "",
                        properties.reply_to,
                        json.dumps(reply).encode(),
                        pika.BasicProperties(delivery_mode=2),
                    )
                channel.basic_ack(method.delivery_tag)
                processed.append(job["job_id"])

    threading.Thread(target=run, daemon=True).start()
    return processed


def test_consumers_reconnect_after_the_broker_closes_them(
    listener: ListenerView,
    text_file: FileView,
    wire: Wire,
    status_consumer: StatusConsumer,
) -> None:
    consumer: Consumer = status_consumer
    stop = threading.Event()
    processed = playing_listener(listener.queue, wire.reply_queue, stop)
    try:
        assert close_connections(consumer.connection_name) == 1  # before any submission
        runs = []
        for n in range(40):
            if n == 20:
                # Mid-way, as a broker restart does: the consumer's connection goes away.
                assert close_connections(consumer.connection_name) == 1
            state = submit(listener=listener.name, resource=str(text_file.id), return_state=True)
            assert state.name == "Submitted"
            runs.append(str(state.state_details.flow_run_id))

        def all_ended() -> bool:
            with session_scope(StoreflowConfig().database_url) as session:
                found = submissions.list_submissions(session, listener_id=listener.id)
            return len(found) == 40 and all(s.status.terminal for s in found)

        wait_for(all_ended, 120, "every submission's end")
    finally:
        stop.set()
    assert consumer.connections >= 3  # the first, and one after each close
    with session_scope(StoreflowConfig().database_url) as session:
        found = submissions.list_submissions(session, listener_id=listener.id)
    assert {s.status for s in found} == {SubmissionStatus.SUCCESS}
    assert sorted(processed) == sorted(runs)  # none lost, none run twice
    assert status_consumer.mirror.wait_idle(60)


@pytest.fixture(autouse=True)
def _rabbitmqctl_available() -> None:
    if subprocess.run(["which", "rabbitmqctl"], capture_output=True).returncode != 0:
        pytest.fail("rabbitmqctl is needed to close connections broker-side", pytrace=False)
