"""RabbitMQ for storeflow's long-running services: a consumer that survives a broker
restart.  The connection and the publisher are tasks/broker.py's (steps publish too).

Where the broker is: models/listener_settings.py.
"""

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from storeflow.models.errors import InvalidInput
from storeflow.tasks.broker import BROKER_ERRORS, Publisher, connect

__all__ = ["BROKER_ERRORS", "Consumer", "Publisher", "connect"]

log = logging.getLogger("storeflow.services.broker")


class Consumer(ABC):
    """One queue consumed with manual acks, reconnecting after the broker goes away.

    A message `handle` rejects as malformed (InvalidInput) is logged and dropped; one
    whose handling fails otherwise is requeued once (the database may be back by then),
    and dropped with its traceback if it fails again, so one bad message never wedges
    the queue.
    """

    name = "consumer"
    # A batched consumer gets every delivery that arrived together in one
    # `handle_batch` call (one database transaction for all, one ack for all).
    batched = False

    def __init__(self, url: str, *, prefetch: int = 100, reconnect_delay: float = 1.0) -> None:
        self.url = url
        self.prefetch = prefetch
        self.reconnect_delay = reconnect_delay
        self.connected = threading.Event()
        self.connection_name = f"storeflow.{self.name}"
        self.connections = 0
        self.handled = 0
        self.dropped = 0
        self.failures = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._batch: list[tuple[Any, pika.BasicProperties, bytes]] = []

    @abstractmethod
    def declare(self, channel: BlockingChannel) -> str:
        """Declare what the consumer needs; return the queue to consume."""

    @abstractmethod
    def handle(self, body: bytes, properties: pika.BasicProperties) -> None:
        """Act on one message (raise InvalidInput to drop it as malformed)."""

    def handle_batch(self, deliveries: list[tuple[pika.BasicProperties, bytes]]) -> None:
        """Act on deliveries that arrived together (batched consumers).  Malformed
        ones are the method's to count and drop; raising fails the whole batch."""
        for properties, body in deliveries:
            self.handle(body, properties)

    def on_connected(self, channel: BlockingChannel) -> None:
        """Called after each (re)connection, before consuming."""

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            connection = None
            try:
                connection = connect(self.url, self.connection_name)
                channel = connection.channel()
                channel.basic_qos(prefetch_count=self.prefetch)
                queue = self.declare(channel)
                self.on_connected(channel)
                self._batch = []
                channel.basic_consume(queue, self._collect if self.batched else self._on_message)
                self.connected.set()
                self.connections += 1
                log.info("%s consuming %s", self.name, queue)
                while not stop.is_set():
                    connection.process_data_events(time_limit=0.2)
                    if self._batch:
                        self._flush(channel)
                    self.idle(channel)
            except BROKER_ERRORS as exc:
                self.connected.clear()
                log.warning("%s lost the broker (%s); reconnecting", self.name, exc or type(exc))
                stop.wait(self.reconnect_delay)
            except Exception:
                # Anything else (a database that is busy in the sweep, a pika state error
                # while the broker goes away) must not end the thread: a consumer that
                # stops silently loses every later message.  Unacked deliveries are
                # redelivered on the next connection.
                self.connected.clear()
                self.failures += 1
                log.exception("%s failed; reconnecting", self.name)
                stop.wait(self.reconnect_delay)
            finally:
                self.connected.clear()
                if connection is not None and connection.is_open:
                    with contextlib.suppress(*BROKER_ERRORS):
                        connection.close()

    def idle(self, channel: BlockingChannel) -> None:
        """Called between deliveries (at least every 0.2 s): periodic work goes here."""

    def _on_message(
        self,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        try:
            self.handle(body, properties)
            self.handled += 1
        except InvalidInput as exc:
            self.dropped += 1
            log.warning("%s dropped a malformed message: %s", self.name, exc)
        except Exception:
            if not method.redelivered:
                log.warning("%s failed on a message; requeued once", self.name, exc_info=True)
                channel.basic_nack(method.delivery_tag, requeue=True)
                return
            self.dropped += 1
            log.exception("%s failed on a redelivered message; dropped", self.name)
        channel.basic_ack(method.delivery_tag)

    def _collect(
        self,
        channel: BlockingChannel,
        method: Any,
        properties: pika.BasicProperties,
        body: bytes,
    ) -> None:
        self._batch.append((method, properties, body))

    def _flush(self, channel: BlockingChannel) -> None:
        batch, self._batch = self._batch, []
        try:
            self.handle_batch([(properties, body) for _, properties, body in batch])
        except Exception:
            log.warning("%s failed on a batch of %d", self.name, len(batch), exc_info=True)
            for method, _, _ in batch:
                if method.redelivered:  # failed before too: drop it, never wedge the queue
                    self.dropped += 1
                    channel.basic_ack(method.delivery_tag)
                else:
                    channel.basic_nack(method.delivery_tag, requeue=True)
            return
        channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)

    def start(self, timeout: float = 30) -> "Consumer":
        """Run in a daemon thread; return once consuming (or raise after `timeout`)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, args=(self._stop,), daemon=True)
        self._thread.name = self.name
        self._thread.start()
        if not self.connected.wait(timeout):
            self.stop()
            raise TimeoutError(f"{self.name}: no broker at {self.url} within {timeout} s")
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
