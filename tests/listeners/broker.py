"""Helpers for tests on the real RabbitMQ at 127.0.0.1:5672: unique names, waits."""

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pika

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def publish(exchange: str, routing_key: str, body: Any, **properties: Any) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(exchange, routing_key, raw, pika.BasicProperties(**properties))


def heartbeat(name: str, *, instance: str = "i-1", version: str = "1.0", **info: Any) -> dict:
    """A heartbeat body exactly as pyclowder's RabbitMQBroadcast builds it."""
    return {
        "id": instance,
        "queue": name,
        "owner": "owner@example.org",
        "extractor_info": {"name": name, "version": version, **info},
    }


def delete_queues(*queues: str) -> None:
    with pika.BlockingConnection(pika.URLParameters(URL)) as connection:
        channel = connection.channel()
        for queue in queues:
            channel.queue_delete(queue)


def wait_for(probe: Callable[[], T | None], timeout: float = 30, what: str = "it") -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")
