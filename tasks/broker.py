"""RabbitMQ as steps use it: where it is, what a lost broker raises, and a publisher
with confirms.  The long-running consumers (services/broker.py) build on the same
connection.

Where the broker is: models/listener_settings.py.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

# What a lost or restarting broker raises; anything else is a bug worth a traceback.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosed,
    ConnectionError,
    OSError,
)

log = logging.getLogger("storeflow.tasks.broker")


def connect(url: str, name: str | None = None) -> pika.BlockingConnection:
    """A blocking connection; `name` shows in the broker's connection list."""
    parameters = pika.URLParameters(url)
    if name:
        parameters.client_properties = {"connection_name": name}
    parameters.heartbeat = 30
    parameters.blocked_connection_timeout = 60
    parameters.connection_attempts = 1
    parameters.socket_timeout = 10
    return pika.BlockingConnection(parameters)


class Publisher:
    """Persistent messages with publisher confirms, on one connection per publisher.

    A lost or restarting broker is waited out: each operation is retried on a fresh
    connection until `retry_for` seconds have passed (a broker restart takes seconds).
    A publish is retried only when it may not have reached the broker: the connection
    failed before the message was written, or it was lost before the broker confirmed
    it.  In the second case the first copy may have been queued (RabbitMQ cannot say),
    so the job can arrive twice; the second copy is never run: the API refuses it the
    submission's file (a second download; at most once, tasks/submissions.py), or
    401 once the submission has ended, and its replies after the end are ignored.
    """

    def __init__(self, url: str, *, retry_for: float = 120.0) -> None:
        self.url = url
        self.retry_for = retry_for
        self.unconfirmed_retries = 0
        self._connection: pika.BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._lock = threading.Lock()

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = connect(self.url)
            self._channel = self._connection.channel()
            self._channel.confirm_delivery()
        return self._channel

    def _retrying(self, what: str, operation: Callable[[BlockingChannel], None]) -> None:
        deadline = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            attempt += 1
            try:
                channel = self._open()
            except BROKER_ERRORS as exc:
                self._wait_or_raise(what, exc, attempt, deadline)
                continue
            try:
                operation(channel)
                return
            except BROKER_ERRORS as exc:
                if what == "publish":
                    self.unconfirmed_retries += 1
                    log.warning("publish not confirmed (%s); publishing again", exc or type(exc))
                self._wait_or_raise(what, exc, attempt, deadline)

    def _wait_or_raise(self, what: str, exc: BaseException, attempt: int, deadline: float) -> None:
        self.close()
        if time.monotonic() >= deadline:
            raise exc
        log.info("%s: broker unavailable (%s); retrying", what, exc or type(exc))
        time.sleep(min(2.0, 0.25 * attempt, max(0.0, deadline - time.monotonic())))

    def declare_queue(self, queue: str) -> None:
        """Declare a queue as pyclowder does (durable, no arguments)."""
        with self._lock:
            self._retrying("declare", lambda channel: channel.queue_declare(queue, durable=True))

    def publish(
        self,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        *,
        exchange: str = "",
    ) -> None:
        """Publish and wait for the broker's confirm (raise once `retry_for` is over)."""
        with self._lock:
            self._retrying(
                "publish",
                lambda channel: channel.basic_publish(
                    exchange, routing_key, body, properties, mandatory=True
                ),
            )

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(*BROKER_ERRORS):
                self._connection.close()
        self._connection = None
        self._channel = None
