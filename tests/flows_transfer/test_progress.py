"""The progress artifact: one write for a short copy, kept current during a long one."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterId
from prefect.client.schemas.objects import Artifact
from prefect.context import TaskRunContext

from storeflow.tasks.transfer import CopyCounters as Progress
from storeflow.tasks.transfer.progress import ProgressReporter, listening

Calls = list[str]


@pytest.fixture
def api_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The artifact writes the reporter makes, in order."""
    calls: Calls = []
    create, update = SyncPrefectClient.create_artifact, SyncPrefectClient.update_artifact

    def counted_create(self: SyncPrefectClient, artifact: Any) -> Any:
        calls.append("create")
        return create(self, artifact)

    def counted_update(self: SyncPrefectClient, artifact_id: UUID, artifact: Any) -> None:
        calls.append("update")
        update(self, artifact_id, artifact)

    monkeypatch.setattr(SyncPrefectClient, "create_artifact", counted_create)
    monkeypatch.setattr(SyncPrefectClient, "update_artifact", counted_update)
    return calls


@pytest.fixture
def busy_server(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Artifact creation hangs like a server busy elsewhere: (writing, release) events,
    set when the write starts, and to let it go on."""
    writing, release = threading.Event(), threading.Event()
    create = SyncPrefectClient.create_artifact

    def slow_create(self: SyncPrefectClient, artifact: Any) -> Any:
        writing.set()
        release.wait(60)
        return create(self, artifact)

    monkeypatch.setattr(SyncPrefectClient, "create_artifact", slow_create)
    return writing, release


def read_artifact(artifact_id: UUID | None) -> Artifact:
    assert artifact_id is not None
    with get_client(sync_client=True) as client:
        (found,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(id=ArtifactFilterId(any_=[artifact_id]))
        )
    return found


def in_a_thread(func: Any, *args: Any) -> None:
    """Call as the engine's copy threads do: no Prefect context there."""
    thread = threading.Thread(target=func, args=args)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "the call never returned"


def test_a_short_copy_writes_the_artifact_once_with_its_final_figures(api_calls: Calls) -> None:
    seen: list[Progress] = []

    @task(cache_policy=NO_CACHE)
    def copy() -> UUID | None:
        reporter = ProgressReporter("short copy", first_after=3600)
        reporter.start(2, 10)
        in_a_thread(reporter, Progress(1, 2, 4, 10))
        in_a_thread(reporter, Progress(2, 2, 10, 10))
        reporter.finish()
        return reporter.artifact_id

    @flow
    def short() -> UUID | None:
        with listening(seen.append):
            return copy()

    artifact = read_artifact(short())

    assert api_calls == ["create"]
    assert artifact.type == "progress" and artifact.key == "transfer-short-copy"
    assert artifact.data == 100.0
    assert artifact.description == "2/2 files, 10/10 bytes delivered"
    assert seen == [Progress(1, 2, 4, 10), Progress(2, 2, 10, 10)]  # the CLI's bar saw all


def test_a_long_copy_keeps_the_artifact_current(api_calls: Calls) -> None:
    snapshots: list[tuple[Any, str | None]] = []
    ids: dict[str, Any] = {}

    @task(cache_policy=NO_CACHE)
    def copy() -> UUID | None:
        context = TaskRunContext.get()
        assert context is not None
        ids["task_run"], ids["flow_run"] = context.task_run.id, context.task_run.flow_run_id
        # The sender thread stays idle here: flush() does what it does when due.
        reporter = ProgressReporter("long", first_after=3600)
        reporter.start(4, 400)
        for done in (1, 2, 3):
            in_a_thread(reporter, Progress(done, 4, done * 100, 400))
            in_a_thread(reporter.flush)
            found = read_artifact(reporter.artifact_id)
            snapshots.append((found.data, found.description))
        in_a_thread(reporter.flush)  # nothing new: no write
        in_a_thread(reporter, Progress(4, 4, 400, 400))
        reporter.finish()
        return reporter.artifact_id

    @flow
    def long() -> UUID | None:
        return copy()

    artifact = read_artifact(long())

    assert snapshots == [
        (25.0, "1/4 files, 100/400 bytes delivered"),
        (50.0, "2/4 files, 200/400 bytes delivered"),
        (75.0, "3/4 files, 300/400 bytes delivered"),
    ]
    assert (artifact.data, artifact.description) == (100.0, "4/4 files, 400/400 bytes delivered")
    assert api_calls == ["create", "update", "update", "update"]
    # Written from threads without a Prefect context, still the task run's artifact.
    assert artifact.task_run_id == ids["task_run"] and artifact.flow_run_id == ids["flow_run"]


def test_the_sender_writes_while_the_copy_goes_on_and_never_holds_it_up(
    busy_server: tuple[threading.Event, threading.Event],
) -> None:
    writing, release = busy_server
    result: dict[str, Any] = {}

    @task(cache_policy=NO_CACHE)
    def copy() -> UUID | None:
        reporter = ProgressReporter("sender", interval=0.01, first_after=0)
        reporter.start(2, 200)
        reporter(Progress(1, 2, 100, 200))
        assert writing.wait(60), "the sender never wrote"
        # The write hangs; the copy threads' reports still go through at once.
        in_a_thread(reporter, Progress(2, 2, 200, 200))
        result["reported"] = reporter.last
        release.set()
        reporter.finish()
        return reporter.artifact_id

    @flow
    def sender() -> UUID | None:
        return copy()

    artifact = read_artifact(sender())

    assert result["reported"] == Progress(2, 2, 200, 200)
    assert (artifact.data, artifact.description) == (100.0, "2/2 files, 200/200 bytes delivered")


def test_a_copy_that_failed_at_once_still_has_its_artifact(api_calls: Calls) -> None:
    @task(cache_policy=NO_CACHE)
    def copy() -> UUID | None:
        reporter = ProgressReporter("failed")
        reporter.start(3, 30)
        reporter.finish()
        return reporter.artifact_id

    @flow
    def failed() -> UUID | None:
        return copy()

    artifact = read_artifact(failed())

    assert api_calls == ["create"]
    assert (artifact.data, artifact.description) == (0.0, "0/3 files, 0/30 bytes delivered")


def test_the_last_figures_travel_while_the_next_step_works(
    busy_server: tuple[threading.Event, threading.Event],
) -> None:
    writing, release = busy_server
    seen: dict[str, Any] = {}

    @task(cache_policy=NO_CACHE)
    def copy() -> ProgressReporter:
        reporter = ProgressReporter("next step", first_after=3600)
        reporter.start(1, 10)
        in_a_thread(reporter, Progress(1, 1, 10, 10))
        reporter.finish(wait=False)  # returns while the write hangs
        seen["writing"] = writing.wait(60)
        seen["created before settle"] = reporter.artifact_id is not None
        return reporter

    @flow
    def next_step() -> UUID | None:
        reporter = copy()
        release.set()
        reporter.settle()
        return reporter.artifact_id

    artifact = read_artifact(next_step())

    assert seen == {"writing": True, "created before settle": False}
    assert (artifact.data, artifact.description) == (100.0, "1/1 files, 10/10 bytes delivered")
