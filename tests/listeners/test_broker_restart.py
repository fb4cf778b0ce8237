"""RabbitMQ restarted in the middle of 100 submissions to a running stock pyclowder
extractor: every submission ends, none is lost, none is run twice.

The extractor may hold one job when its broker goes (pyclowder's prefetch is 1), and
may have done the work without its `done` getting out; RabbitMQ then redelivers the
job.  storeflow refuses the redelivery its file (at most once) and ends that one
submission Failure, saying why, rather than let it run twice.

The broker is the test's own node (tests/listeners/private_broker.py), never the
machine's shared one.  The extractor is the stock word count, kept running by a
supervisor (pyclowder exits when its broker goes away), taking 0.3 s per job as real
work would; it appends each job id it has processed to a file.
"""

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

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
from tests.listeners.broker import unique, wait_for
from tests.listeners.conftest import serving
from tests.listeners.private_broker import PrivateRabbit
from tests.listeners.supervise import Supervised

SUBMISSIONS = 100
RESTART_AT = 50


@pytest.fixture
def rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(tmp_path / "rabbit").start()
    try:
        yield node
    finally:
        node.kill()


@pytest.fixture
def services(
    storeflow_home: Path, rabbit: PrivateRabbit, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Services]:
    # The submit runs read where the broker is from the environment (not 5672).
    with serving(monkeypatch, broker_url=rabbit.url) as started:
        yield started


@pytest.fixture
def supervised(tmp_path: Path, rabbit: PrivateRabbit) -> Iterator[Supervised]:
    name = unique("wordcount")
    extractor = Supervised(
        tmp_path / name,
        name,
        rabbit.url,
        WORDCOUNT_LOG=str(tmp_path / "processed.txt"),
        WORDCOUNT_SLEEP="0.3",
    ).start()
    try:
        yield extractor
    finally:
        extractor.stop()


def listener_named(name: str, output: Any) -> ListenerView:
    def probe() -> ListenerView | None:
        with session_scope(StoreflowConfig().database_url) as session:
            found = listeners.list_listeners(session, name=name)
        return found[0] if found else None

    try:
        return wait_for(probe, 120, f"a heartbeat from {name}")
    except AssertionError:
        raise AssertionError(output()) from None


def poem(tmp_path: Path) -> FileView:
    path = tmp_path / "data" / "poem.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text("the quick brown fox\njumps over the lazy dog\n")
    return register(StoreflowConfig(), path)[0]


def restart(rabbit: PrivateRabbit, done: threading.Event, errors: list[BaseException]) -> None:
    try:
        rabbit.stop_node()
        threading.Event().wait(2)  # down for a moment, as in a real restart
        rabbit.start()
    except BaseException as exc:  # the main thread reports it
        errors.append(exc)
    finally:
        done.set()


def test_a_broker_restart_mid_run_loses_nothing_and_runs_nothing_twice(
    services: Services, supervised: Supervised, rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    listener = listener_named(supervised.name, supervised.output)
    file = poem(tmp_path)
    restarted = threading.Event()
    errors: list[BaseException] = []
    runs: list[str] = []
    for n in range(SUBMISSIONS):
        if n == RESTART_AT:
            # While submissions keep coming: the next ones publish into a broker that
            # is going down or coming back.
            threading.Thread(target=restart, args=(rabbit, restarted, errors)).start()
        state = submit(
            listener=listener.name, resource=str(file.id), timeout_seconds=900, return_state=True
        )
        assert state.name == "Submitted", state.message
        runs.append(str(state.state_details.flow_run_id))
    assert restarted.wait(300) and not errors, errors
    assert rabbit.starts == 2, rabbit.starts

    def all_ended() -> bool:
        with session_scope(StoreflowConfig().database_url) as session:
            found = submissions.list_submissions(session, listener_id=listener.id)
        return len(found) == SUBMISSIONS and all(s.status.terminal for s in found)

    try:
        wait_for(all_ended, 900, "every submission's end")
    except AssertionError:
        raise AssertionError(supervised.output()[-5000:]) from None
    with session_scope(StoreflowConfig().database_url) as session:
        found = submissions.list_submissions(session, listener_id=listener.id)
    succeeded = {s.id for s in found if s.status is SubmissionStatus.SUCCESS}
    lost = [s for s in found if s.status is not SubmissionStatus.SUCCESS]
    # At most the one job the extractor held when its broker went (prefetch 1) ends
    # otherwise: redelivered after the extractor had its file, it is refused rather than
    # run twice, and its submission says so.
    assert len(lost) <= 1, [(s.status, s.message) for s in lost]
    for s in lost:
        assert s.status is SubmissionStatus.FAILURE
        assert s.message == LOST_MESSAGE.format(what="file")

    processed = Counter((tmp_path / "processed.txt").read_text().split())
    assert [job for job, times in processed.items() if times > 1] == []  # none twice
    assert succeeded <= set(processed) <= set(runs)  # none lost: each success ran once
    # pyclowder exited with its broker and came back
    assert supervised.restarts >= 1, supervised.output()[-3000:]
    connections = (services.statuses.connections, services.heartbeats.connections)
    assert min(connections) >= 2, connections  # both consumers reconnected

    # Every run reads as its submission: Completed "Success" (or Failed "Failure").
    assert services.mirror.wait_idle(120), "the state mirror still had work after 120 s"
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(r) for r in runs])),
            limit=SUBMISSIONS,
        )
    assert {str(r.id): r.state_name for r in flow_runs} == {
        s.id: "Success" if s.id in succeeded else "Failure" for s in found
    }


def download_events(run_id: str) -> int:
    with session_scope(StoreflowConfig().database_url) as session:
        return [e.kind for e in submissions.get(session, run_id).events].count("storeflow.download")


def test_the_job_in_flight_when_the_broker_restarts_is_not_run_twice(
    services: Services, rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    """The stop lands while the extractor works on a job (it takes 30 s here): the job
    is redelivered to the restarted extractor, refused its file, and ends Failure
    saying why; the jobs queued behind it run once each and succeed."""
    name = unique("wordcount")
    log = tmp_path / "processed.txt"
    extractor = Supervised(
        tmp_path / name, name, rabbit.url, WORDCOUNT_LOG=str(log), WORDCOUNT_SLEEP="30"
    ).start()
    try:
        listener = listener_named(name, extractor.output)
        file = poem(tmp_path)
        runs = []
        for _ in range(3):
            state = submit(listener=name, resource=str(file.id), return_state=True)
            assert state.name == "Submitted", state.message
            runs.append(str(state.state_details.flow_run_id))
        in_flight = runs[0]
        wait_for(lambda: download_events(in_flight) == 1, 60, "the first job's download")

        rabbit.stop_node()
        # What the service manager starts next works at full speed.
        extractor.extractor.env["WORDCOUNT_SLEEP"] = "0"
        rabbit.start()

        def all_ended() -> bool:
            with session_scope(StoreflowConfig().database_url) as session:
                found = submissions.list_submissions(session, listener_id=listener.id)
            return all(s.status.terminal for s in found)

        wait_for(all_ended, 300, "every submission's end")
    finally:
        extractor.stop()
    with session_scope(StoreflowConfig().database_url) as session:
        ended = {s.id: s for s in submissions.list_submissions(session, listener_id=listener.id)}
    assert ended[in_flight].status is SubmissionStatus.FAILURE
    assert ended[in_flight].message == LOST_MESSAGE.format(what="file")
    assert {ended[r].status for r in runs[1:]} == {SubmissionStatus.SUCCESS}
    assert sorted(log.read_text().split()) == sorted(runs[1:])  # once each; not the lost one
    assert extractor.restarts >= 1
