"""The heartbeat consumer: listeners exist because they heartbeat.

Bound to the durable fanout exchange `extractors` that stock extractors publish
their heartbeats on; each heartbeat upserts its listener.  A malformed heartbeat is
logged and dropped (Consumer), and the consumer goes on.
"""

import pika
from pika.adapters.blocking_connection import BlockingChannel

from storeflow.models.db import session_scope
from storeflow.models.listener_repository import parse_heartbeat, record_heartbeat
from storeflow.services.broker import Consumer

EXCHANGE = "extractors"
QUEUE = "storeflow.heartbeats"


class HeartbeatConsumer(Consumer):
    name = "heartbeats"

    def __init__(
        self, url: str, database_url: str, *, queue: str = QUEUE, exchange: str = EXCHANGE
    ) -> None:
        super().__init__(url)
        self.database_url = database_url
        self.queue = queue
        self.exchange = exchange

    def declare(self, channel: BlockingChannel) -> str:
        # Declared as pyclowder declares it, or the extractor's own declare would fail.
        channel.exchange_declare(self.exchange, exchange_type="fanout", durable=True)
        channel.queue_declare(self.queue, durable=True)
        channel.queue_bind(self.queue, self.exchange)
        return self.queue

    def handle(self, body: bytes, properties: pika.BasicProperties) -> None:
        beat = parse_heartbeat(body)
        with session_scope(self.database_url) as session:
            record_heartbeat(session, beat)
