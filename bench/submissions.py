"""Submissions benchmark: storeflow's listener path against bare baselines, as ratios.

    .venv/bin/python -m bench.submissions                    # 20 round trips, 5000 replies
    .venv/bin/python -m bench.submissions --round-trips 5 --replies 2000

Two figures, each measured against its baseline in the same run (targets: issue 12):

- round trip: `submit` run -> stock pyclowder word-count extractor (CLOWDER_VERSION=2,
  a subprocess) -> run ended Success, one at a time, against a bare Prefect flow of the
  same shape on the same server (it mints the key, publishes the same job and waits
  in its own process for the extractor's `done`).  Turns alternate.  Target >= 0.8x.
- status consumer: replies per second through storeflow's StatusConsumer (parse, one
  transaction per batch on the SQLite catalog, ack) against a plain pika consume loop
  (json.loads and ack each) over the same number of pyclowder-form replies.  The run
  mirror is left out (it works in its own thread, after the commit).  Target >= 0.5x.

Needs RabbitMQ on 127.0.0.1:5672; Prefect is PREFECT_API_URL's server, else an
ephemeral one in a scratch PREFECT_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from statistics import mean
from typing import Any

import pika

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def _publish_many(queue: str, bodies: list[bytes]) -> None:
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        for body in bodies:
            channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def _delete(*queues: str) -> None:
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)


def _replies(ids: list[str], count: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "file_id": "1",
                "extractor_id": "bench",
                "job_id": ids[n % len(ids)],
                "status": f"StatusMessage.processing: step {n}",
                "start": "2026-01-01T00:00:00",
                "message_type": "StatusMessage.processing",
                "message": f"step {n}",
            }
        ).encode()
        for n in range(count)
    ]


def consumer_ratio(count: int, home: Path) -> dict[str, float]:
    from storeflow.blocks.config import StoreflowConfig
    from storeflow.models import listener_repository as listeners
    from storeflow.models import submission_repository as submissions
    from storeflow.models.db import session_scope
    from storeflow.models.submissions import Origin
    from storeflow.services.run_mirror import RunMirror
    from storeflow.services.status import StatusConsumer

    class CountingMirror(RunMirror):
        def notify(self, submission_id: str) -> None:
            pass

    database_url = StoreflowConfig().database_url
    beat = listeners.parse_heartbeat(
        json.dumps(
            {"id": "b", "queue": "bench", "owner": None, "extractor_info": {"name": "bench"}}
        ).encode()
    )
    ids = [str(uuid.uuid4()) for _ in range(50)]
    with session_scope(database_url) as session:
        listener = listeners.record_heartbeat(session, beat)
        for sid in ids:
            submissions.create(
                session,
                sid,
                listener_id=listener.id,
                resource_type="file",
                resource_id="1",
                origin=Origin.API,
                parameters={},
                timeout_seconds=86400,
            )
    bodies = _replies(ids, count)

    storeflow_queue = f"bench.replies-{uuid.uuid4().hex[:8]}"
    _publish_many(storeflow_queue, bodies)
    consumer = StatusConsumer(
        URL, database_url, CountingMirror(database_url), queue=storeflow_queue
    )
    started = time.perf_counter()
    consumer.start()
    while consumer.handled < count:
        time.sleep(0.005)
    storeflow_seconds = time.perf_counter() - started
    consumer.stop()

    plain_queue = f"bench.plain-{uuid.uuid4().hex[:8]}"
    _publish_many(plain_queue, bodies)
    seen = 0
    started = time.perf_counter()
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=200)

        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            nonlocal seen
            json.loads(body)
            ch.basic_ack(method.delivery_tag)
            seen += 1
            if seen == count:
                ch.stop_consuming()

        channel.basic_consume(plain_queue, on_message)
        channel.start_consuming()
    plain_seconds = time.perf_counter() - started
    _delete(storeflow_queue, plain_queue)
    return {
        "replies": count,
        "storeflow_per_second": count / storeflow_seconds,
        "pika_per_second": count / plain_seconds,
        "ratio": plain_seconds / storeflow_seconds,
    }


def round_trip_ratio(runs: int, home: Path) -> dict[str, float]:
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Failed, State

    from storeflow.blocks.config import StoreflowConfig
    from storeflow.flows.submissions import submit
    from storeflow.models import api_keys
    from storeflow.models import listener_repository as listeners
    from storeflow.models import submission_repository as submissions
    from storeflow.models.db import session_scope
    from storeflow.models.listener_settings import ListenerSettings
    from storeflow.models.submissions import Origin
    from storeflow.services.serve import running
    from storeflow.tasks.catalog import register
    from storeflow.tasks.submissions import dataset_id
    from tests.listeners.extractor import ExtractorProcess, free_port

    config = StoreflowConfig()
    port = free_port()
    tag = uuid.uuid4().hex[:8]
    settings = ListenerSettings(
        broker_url=URL,
        api_url=f"http://127.0.0.1:{port}/",
        reply_queue=f"bench.replies-{tag}",
        heartbeat_queue=f"bench.heartbeats-{tag}",
    )
    os.environ.update(
        STOREFLOW_API_URL=settings.api_url, STOREFLOW_REPLY_QUEUE=settings.reply_queue
    )
    data = home / "data" / "poem.txt"
    data.parent.mkdir(parents=True)
    data.write_text("the quick brown fox\njumps over the lazy dog\n")
    file = register(config, data)[0]
    name = f"bench-wordcount-{tag}"
    extractor = ExtractorProcess(home / "extractor", name, URL)

    @task(name="prepare")
    def bare_prepare(run_id: str, listener_id: int) -> str:
        with session_scope(config.database_url) as session:
            submissions.create(
                session,
                run_id,
                listener_id=listener_id,
                resource_type="file",
                resource_id=str(file.id),
                origin=Origin.API,
                parameters={},
                timeout_seconds=600,
            )
            return api_keys.mint_submission_key(
                session,
                run_id,
                file_id=file.id,
                dataset=file.dataset,
                lifetime=timedelta(seconds=600),
            )

    @task(name="send-job")
    def bare_send_and_wait(run_id: str, key: str) -> bool:
        reply_queue = f"bench.bare-{run_id}"
        job = {
            "host": settings.api_url,
            "secretKey": key,
            "retry_count": 0,
            "resource_type": "file",
            "flags": "",
            "filename": file.name,
            "fileSize": file.size,
            "id": str(file.id),
            "datasetId": dataset_id(file.dataset),
            "job_id": run_id,
            "parameters": {},
        }
        with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
            channel = connection.channel()
            channel.queue_declare(reply_queue, exclusive=True)
            channel.confirm_delivery()
            channel.basic_publish(
                "",
                name,
                json.dumps(job).encode(),
                pika.BasicProperties(delivery_mode=2, reply_to=reply_queue, correlation_id=run_id),
            )
            for _, _, body in channel.consume(reply_queue, auto_ack=True, inactivity_timeout=120):
                if body is None:
                    return False
                kind = json.loads(body)["message_type"]
                if kind in ("StatusMessage.done", "StatusMessage.error"):
                    return kind == "StatusMessage.done"
        return False

    @flow(name="bare-submit", persist_result=False)
    def bare_submit(listener_id: int) -> State[Any]:
        from prefect.runtime import flow_run

        run_id = str(flow_run.get_id())
        ok = bare_send_and_wait(run_id, bare_prepare(run_id, listener_id))
        return Completed(name="Success") if ok else Failed(name="Failure")

    def storeflow_once(client: Any) -> float:
        started = time.perf_counter()
        state = submit(listener=name, resource=str(file.id), return_state=True)
        run_id = state.state_details.flow_run_id
        while True:
            current = client.read_flow_run(run_id).state
            if current is not None and current.is_final():
                break
            time.sleep(0.01)
        if current.name != "Success":
            raise SystemExit(f"storeflow submission ended {current.name}: {current.message}")
        return time.perf_counter() - started

    def bare_once(listener_id: int) -> float:
        started = time.perf_counter()
        state = bare_submit(listener_id, return_state=True)
        if state.name != "Success":
            raise SystemExit(f"bare flow ended {state.name}")
        return time.perf_counter() - started

    with running(config, settings):
        extractor.start()
        try:
            deadline = time.monotonic() + 60
            listener = None
            while listener is None and time.monotonic() < deadline:
                with session_scope(config.database_url) as session:
                    found = listeners.list_listeners(session, name=name)
                listener = found[0] if found else None
                time.sleep(0.2)
            if listener is None:
                raise SystemExit(f"the extractor never heartbeat:\n{extractor.output()}")
            storeflow_times, bare_times = [], []
            with get_client(sync_client=True) as client:
                storeflow_once(client)  # warm-up: imports, clients, the first run
                bare_once(listener.id)
                for _ in range(runs):
                    storeflow_times.append(storeflow_once(client))
                    bare_times.append(bare_once(listener.id))
        finally:
            extractor.stop()
            _delete(name, f"error.{name}", settings.reply_queue, settings.heartbeat_queue)
    return {
        "runs": runs,
        "storeflow_mean_seconds": mean(storeflow_times),
        "bare_mean_seconds": mean(bare_times),
        "storeflow_per_second": 1 / mean(storeflow_times),
        "bare_per_second": 1 / mean(bare_times),
        "ratio": mean(bare_times) / mean(storeflow_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=20)
    parser.add_argument("--replies", type=int, default=5000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="storeflow-bench-submissions-"))
    os.environ["STOREFLOW_HOME"] = str(scratch / "home")
    os.environ.setdefault("PREFECT_HOME", str(scratch / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # one (ephemeral) server, from this thread
        client.hello()
    consumer = consumer_ratio(args.replies, scratch)
    print(json.dumps({"status_consumer": consumer, "target": ">= 0.5"}), flush=True)
    trip = round_trip_ratio(args.round_trips, scratch)
    print(json.dumps({"round_trip": trip, "target": ">= 0.8"}), flush=True)


if __name__ == "__main__":
    main()
