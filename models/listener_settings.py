"""Where the listener services meet: the broker, the reply queue, the HTTP API.

Read from the environment when asked, never at import time.
"""

import os
from dataclasses import dataclass

BROKER_URL_ENV = "STOREFLOW_BROKER_URL"
API_URL_ENV = "STOREFLOW_API_URL"
REPLY_QUEUE_ENV = "STOREFLOW_REPLY_QUEUE"
HEARTBEAT_QUEUE_ENV = "STOREFLOW_HEARTBEAT_QUEUE"

DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_API_URL = "http://127.0.0.1:8787/"


@dataclass(frozen=True)
class ListenerSettings:
    broker_url: str
    # What jobs carry as `host`: the base URL extractors call back (Clowder's).
    api_url: str
    reply_queue: str = "storeflow.replies"
    heartbeat_queue: str = "storeflow.heartbeats"

    @classmethod
    def from_environment(cls) -> "ListenerSettings":
        api = os.environ.get(API_URL_ENV) or DEFAULT_API_URL
        return cls(
            broker_url=os.environ.get(BROKER_URL_ENV) or DEFAULT_BROKER_URL,
            api_url=api if api.endswith("/") else api + "/",
            reply_queue=os.environ.get(REPLY_QUEUE_ENV) or "storeflow.replies",
            heartbeat_queue=os.environ.get(HEARTBEAT_QUEUE_ENV) or "storeflow.heartbeats",
        )
