"""Mirror submissions into their Prefect flow runs: the run's state is the status.

The status consumer records replies in the database and hands the submission's id
to the mirror; the mirror's own thread then brings the run up to date: the new
events as run logs and Prefect events, the progress artifact, the events table
artifact, and, once the submission has ended, the run's final state
(`Completed(name="Success")` / `Failed(name="Failure")`).  Several replies queued for
one submission are mirrored once, so a burst of replies costs the consumer nothing
but database writes.
"""

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate, LogCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
)
from prefect.events import emit_event
from prefect.states import Completed, Failed, State

from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.submission_repository import SubmissionView
from storeflow.models.submissions import SubmissionStatus

log = logging.getLogger("storeflow.services.run_mirror")

LOGGER_NAME = "storeflow.listener"
# A reply can arrive before the submit run has parked itself as Submitted.
PARK_TIMEOUT = 30.0


def final_state(submission: SubmissionView) -> State[Any] | None:
    if submission.status is SubmissionStatus.SUCCESS:
        return Completed(name="Success", message=submission.message)
    if submission.status is SubmissionStatus.FAILURE:
        return Failed(name="Failure", message=submission.message)
    return None


def events_table(submission: SubmissionView) -> str:
    return json.dumps(
        [
            {
                "at": e.at.isoformat(),
                "event": e.kind,
                "status": e.status or "",
                "progress": "" if e.progress is None else e.progress,
                "message": e.message,
            }
            for e in submission.events
        ]
    )


class RunMirror:
    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._mirrored_events: dict[str, int] = {}
        self._progress_ids: dict[str, UUID] = {}
        self._thread: threading.Thread | None = None
        self.finished = 0

    def start(self) -> "RunMirror":
        self._thread = threading.Thread(target=self._run, name="run-mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending and self._queue.empty():
                    return True
            time.sleep(0.05)
        return False

    def notify(self, submission_id: str) -> None:
        with self._lock:
            if submission_id in self._pending:
                return  # already queued: it will read everything new when its turn comes
            self._pending.add(submission_id)
        self._queue.put(submission_id)

    def _run(self) -> None:
        # The client is opened at the first submission, not at start: without
        # PREFECT_API_URL, opening one starts Prefect's ephemeral server.
        client: SyncPrefectClient | None = None
        try:
            while (submission_id := self._queue.get()) is not None:
                with self._lock:
                    self._pending.discard(submission_id)
                try:
                    if client is None:
                        client = get_client(sync_client=True)
                        client.__enter__()
                    self.mirror(client, submission_id)
                except Exception:
                    log.exception("could not mirror submission %s into its run", submission_id)
        finally:
            if client is not None:
                client.__exit__(None, None, None)

    def mirror(self, client: SyncPrefectClient, submission_id: str) -> None:
        with session_scope(self.database_url) as session:
            submission = submissions.get(session, submission_id)
        run_id = UUID(submission.id)
        seen = self._mirrored_events.get(submission_id, 0)
        new = submission.events[seen:]
        if new:
            client.create_logs(
                [
                    LogCreate(
                        name=LOGGER_NAME,
                        level=logging.ERROR if e.status == "FAILURE" else logging.INFO,
                        message=f"{submission.listener}: {e.kind}: {e.message}",
                        timestamp=e.at,
                        flow_run_id=run_id,
                    )
                    for e in new
                ]
            )
            for e in new:
                emit_event(
                    event=f"storeflow.submission.{e.kind.rsplit('.', 1)[-1]}",
                    resource={
                        "prefect.resource.id": f"storeflow.submission.{submission.id}",
                        "storeflow.submission.status": submission.status.value,
                        "storeflow.listener.name": submission.listener,
                    },
                    related=[
                        {
                            "prefect.resource.id": f"prefect.flow-run.{submission.id}",
                            "prefect.resource.role": "flow-run",
                        }
                    ],
                    payload={"message": e.message, "progress": e.progress},
                    occurred=e.at,
                )
            self._mirrored_events[submission_id] = seen + len(new)
            self._update_progress(client, submission, run_id)
            client.create_artifact(
                ArtifactCreate(
                    key=f"submission-{submission.id}",
                    type="table",
                    description=f"{submission.listener}: {submission.status.value}",
                    data=events_table(submission),
                    flow_run_id=run_id,
                )
            )
        state = final_state(submission)
        if state is not None:
            self._finish_run(client, run_id, state)
            self._mirrored_events.pop(submission_id, None)
            self._progress_ids.pop(submission_id, None)
            self.finished += 1

    def _update_progress(
        self, client: SyncPrefectClient, submission: SubmissionView, run_id: UUID
    ) -> None:
        known = [e.progress for e in submission.events if e.progress is not None]
        if not known:
            return
        progress = float(known[-1])
        artifact_id = self._progress_ids.get(submission.id)
        if artifact_id is None:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
                    type=ArtifactFilterType(any_=["progress"]),
                ),
                limit=1,
            )
            if found:
                artifact_id = found[0].id
            else:
                artifact_id = client.create_artifact(
                    ArtifactCreate(type="progress", data=progress, flow_run_id=run_id)
                ).id
            self._progress_ids[submission.id] = artifact_id
        client.update_artifact(artifact_id, ArtifactUpdate(data=progress))

    def _finish_run(self, client: SyncPrefectClient, run_id: UUID, state: State[Any]) -> None:
        deadline = time.monotonic() + PARK_TIMEOUT
        while True:
            current = client.read_flow_run(run_id).state
            if current is None or current.is_paused() or current.is_final():
                break
            if time.monotonic() > deadline:
                log.warning("run %s still %s; setting its outcome anyway", run_id, current.name)
                break
            time.sleep(0.05)
        if current is not None and current.is_final() and current.name == state.name:
            return
        state.timestamp = datetime.now(UTC)
        client.set_flow_run_state(run_id, state, force=True)
