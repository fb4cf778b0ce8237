"""Transfer progress, as the Prefect UI and the CLI see it.

The engine calls one hook with counters (from its copy threads, throttled); this turns
it into a Prefect progress artifact kept current (percent) and passes it to any local
listener (the CLI's rich progress bar).  Artifact updates are an API call each, so they
are throttled further: at most one per `interval` seconds, plus the final one.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_logger

from tasks.transfer import Progress

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


class ProgressReporter:
    def __init__(self, task_id: str, interval: float = 1.0) -> None:
        self.key = artifact_key(task_id)
        self.interval = interval
        self.artifact_id: UUID | None = None
        self.last: Progress | None = None
        self._sent_at = 0.0
        self._sent_percent = -1.0
        self._lock = threading.Lock()

    def start(self, files: int, nbytes: int) -> None:
        created = create_progress_artifact(
            progress=0.0,
            key=self.key,
            description=f"{files} files, {nbytes} bytes to deliver",
        )
        assert isinstance(created, UUID)  # the sync flavour, called from a sync task
        self.artifact_id = created

    def __call__(self, progress: Progress) -> None:
        with self._lock:
            self.last = progress
            for listener in list(_listeners):
                listener(progress)
            now = time.monotonic()
            if now - self._sent_at >= self.interval:
                self._send(progress.percent)
                self._sent_at = now

    def finish(self) -> None:
        """Send the last counters whatever the throttle says."""
        with self._lock:
            if self.last is not None:
                self._send(self.last.percent, final=True)

    def _send(self, percent: float, final: bool = False) -> None:
        if self.artifact_id is None or (percent == self._sent_percent and not final):
            return
        try:
            update_progress_artifact(self.artifact_id, min(100.0, percent))
            self._sent_percent = percent
        except Exception as exc:  # progress is informative: never fail a copy over it
            get_logger("storeflow.transfer").warning("progress artifact update failed: %s", exc)
