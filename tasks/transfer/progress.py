"""Transfer progress, as the Prefect UI and the CLI see it.

The engine calls one hook with counters (from its copy threads, throttled); this turns
it into a Prefect progress artifact (percent; files and bytes done in its description)
and passes it to any local listener (the CLI's rich progress bar).

Artifact writes are an API call each, so they are throttled further.  The artifact is
created only once the copy has run `first_after` seconds, or at the end: a short copy
costs one call, with its final figures.  After that it is updated at most once per
`interval` seconds, plus the final figures.  Every write comes from one sender thread,
the last one too: `finish(wait=False)` lets the flow go on to its next step while the
final figures travel, and `settle()` waits for them before the flow run ends.  The
sender uses the client of the task run that started the reporter, with that run's ids:
a thread without Prefect's context would otherwise open a client of its own.
"""

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.logging import get_logger
from prefect.utilities.context import get_task_and_flow_run_ids

from storeflow.tasks.transfer import CopyCounters as Progress

Listener = Callable[[Progress], None]

# Listeners in this process: the CLI registers one around an in-process run.  A flow
# parameter cannot carry a callable, and the copy threads do not inherit contextvars.
_listeners: list[Listener] = []
_listeners_lock = threading.Lock()


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener` with the progress of every transfer run in this process meanwhile."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def artifact_key(task_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", task_id.lower()).strip("-")[:80] or "task"
    return f"transfer-{slug}"


def describe(progress: Progress) -> str:
    return (
        f"{progress.files_done}/{progress.files_total} files, "
        f"{progress.bytes_done}/{progress.bytes_total} bytes delivered"
    )


class ProgressReporter:
    """The engine's progress hook for one `perform`: listeners at once, the artifact from
    a sender thread of its own.  The copy threads never wait for the API: a server slow
    to answer (its own disk busy with the copy's writeback) would stall the copy."""

    def __init__(self, task_id: str, interval: float = 1.0, first_after: float = 0.5) -> None:
        self.key = artifact_key(task_id)
        self.interval = interval
        self.first_after = first_after
        self.artifact_id: UUID | None = None
        self.last: Progress | None = None
        self._client: SyncPrefectClient | None = None
        self._flow_run_id: UUID | None = None
        self._task_run_id: UUID | None = None
        self._sent: Progress | None = None
        self._lock = threading.Lock()  # guards `last`
        self._send_lock = threading.Lock()  # one API write at a time
        self._done = threading.Event()
        self._sender: threading.Thread | None = None

    def start(self, files: int, nbytes: int) -> None:
        """Note the totals and the calling task run, and start the sender; nothing is
        sent before `first_after` seconds."""
        self._task_run_id, self._flow_run_id = get_task_and_flow_run_ids()
        # The run's own client (from its client context); not entered here: it lives as
        # long as the flow run, which outlives this task.
        self._client = get_client(sync_client=True)
        self.last = Progress(0, files, 0, nbytes)
        self._sender = threading.Thread(target=self._send_now_and_then, name="sf-progress")
        self._sender.daemon = True
        self._sender.start()

    def __call__(self, progress: Progress) -> None:
        with self._lock:
            self.last = progress
            for listener in list(_listeners):
                listener(progress)

    def flush(self) -> None:
        """Write the latest counters to the artifact, if they changed since the last write."""
        with self._lock:
            progress = self.last
        with self._send_lock:
            if progress is not None and (self.artifact_id is None or progress != self._sent):
                self._send(progress)

    def finish(self, wait: bool = True) -> None:
        """Stop the sender after it writes the last counters (creating the artifact if
        the copy was too short to have it yet); with `wait=False`, return at once and
        let `settle()` wait for that write."""
        self._done.set()
        if self._sender is None:
            self.flush()
        elif wait:
            self.settle()

    def settle(self, timeout: float = 120.0) -> None:
        """Wait (at most `timeout` seconds) for the sender's last write."""
        if self._sender is None:
            return
        self._sender.join(timeout)
        if self._sender.is_alive():
            get_logger("storeflow.transfer").warning(
                "progress artifact %s: the last update still pending after %.0fs",
                self.key,
                timeout,
            )

    def _send_now_and_then(self) -> None:
        wait = self.first_after
        while not self._done.wait(wait):
            self.flush()
            wait = self.interval
        self.flush()

    def _send(self, progress: Progress) -> None:
        if self._client is None:
            return
        percent = min(100.0, progress.percent)
        try:
            if self.artifact_id is None:
                created = self._client.create_artifact(
                    ArtifactCreate(
                        type="progress",
                        key=self.key,
                        description=describe(progress),
                        data=percent,
                        flow_run_id=self._flow_run_id,
                        task_run_id=self._task_run_id,
                    )
                )
                self.artifact_id = created.id
            else:
                self._client.update_artifact(
                    self.artifact_id, ArtifactUpdate(data=percent, description=describe(progress))
                )
            self._sent = progress
        except Exception as exc:  # progress is informative: never fail a copy over it
            get_logger("storeflow.transfer").warning("progress artifact update failed: %s", exc)
