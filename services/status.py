"""The status consumer: listeners' replies drive their submissions.

Replies arrive on storeflow's durable reply queue (each job's `reply_to`) in the form
pyclowder sends them.  Each is stored as an event of its submission; `done` and
`error` end it (SUCCESS / FAILURE) and a message after that is ignored.  A sweep
ends, as FAILURE, every submission whose listener has not answered within its
timeout, so a listener killed mid-job never leaves one SUBMITTED forever.  The
flow runs follow through the RunMirror.
"""

import logging
import time

import pika
from pika.adapters.blocking_connection import BlockingChannel

from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput
from storeflow.services.broker import Consumer
from storeflow.services.run_mirror import RunMirror
from storeflow.tasks.submissions import expire, parse_reply, record_replies

log = logging.getLogger("storeflow.services.status")

SWEEP_EVERY = 5.0


class StatusConsumer(Consumer):
    name = "statuses"
    batched = True

    def __init__(
        self, url: str, database_url: str, mirror: RunMirror, *, queue: str, prefetch: int = 200
    ) -> None:
        super().__init__(url, prefetch=prefetch)
        self.database_url = database_url
        self.mirror = mirror
        self.queue = queue
        self.ignored = 0
        self._last_sweep = 0.0

    def declare(self, channel: BlockingChannel) -> str:
        channel.queue_declare(self.queue, durable=True)
        return self.queue

    def handle(self, body: bytes, properties: pika.BasicProperties) -> None:
        self.handle_batch([(properties, body)])

    def handle_batch(self, deliveries: list[tuple[pika.BasicProperties, bytes]]) -> None:
        """Every reply that arrived together in one transaction: one commit (one fsync
        on SQLite) for the lot, the mirror told once per submission."""
        parsed = []
        for properties, body in deliveries:
            try:
                parsed.append(parse_reply(body, properties.correlation_id))
            except InvalidInput as exc:
                self._drop(exc)
        if not parsed:
            return
        with session_scope(self.database_url) as session:
            recorded = record_replies(session, parsed)
        for submission_id in recorded.unknown:
            self._drop(InvalidInput("reply.job_id", f"no submission {submission_id!r}"))
        if recorded.ignored:
            self.ignored += recorded.ignored
            log.info("%d replies for ended submissions ignored", recorded.ignored)
        self.handled += len(parsed) - len(recorded.unknown) - recorded.ignored
        for submission_id in recorded.changed:
            self.mirror.notify(submission_id)

    def _drop(self, exc: InvalidInput) -> None:
        self.dropped += 1
        log.warning("%s dropped a malformed message: %s", self.name, exc)

    def idle(self, channel: BlockingChannel) -> None:
        if time.monotonic() - self._last_sweep >= SWEEP_EVERY:
            self._last_sweep = time.monotonic()
            self.sweep()

    def sweep(self) -> list[str]:
        """End every overdue submission (FAILURE); their ids."""
        with session_scope(self.database_url) as session:
            late = submissions.overdue(session)
        ended = []
        for submission_id in late:
            with session_scope(self.database_url) as session:
                if expire(session, submission_id) is not None:
                    ended.append(submission_id)
            self.mirror.notify(submission_id)
        return ended
