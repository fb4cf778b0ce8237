"""RabbitMQ as steps use it: where it is, what a lost broker raises, and a publisher
with confirms.  The long-running consumers (services/broker.py) build on the same
connection.

Where the broker is: models/listener_settings.py.
"""

import contextlib
import threading
import time

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
    """Persistent messages with publisher confirms, on one connection per publisher,
    reopened after the broker went away (one retry per message)."""

    def __init__(self, url: str) -> None:
        self.url = url
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

    def declare_queue(self, queue: str) -> None:
        """Declare a queue as pyclowder does (durable, no arguments)."""
        with self._lock:
            self._open().queue_declare(queue, durable=True)

    def publish(
        self,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        *,
        exchange: str = "",
        attempts: int = 5,
    ) -> None:
        """Publish and wait for the broker's confirm (raise after `attempts` failures)."""
        with self._lock:
            for attempt in range(1, attempts + 1):
                try:
                    channel = self._open()
                    channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
                    return
                except BROKER_ERRORS:
                    self.close()
                    if attempt == attempts:
                        raise
                    time.sleep(min(5.0, 0.5 * attempt))

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(*BROKER_ERRORS):
                self._connection.close()
        self._connection = None
        self._channel = None
