"""Everything listeners need, in one process: the heartbeat consumer, the status
consumer (with its run mirror and timeout sweep), the HTTP API, the watcher that
registers files as they are written in the spaces, and the feed matcher that turns
their file events into `storeflow.feed.matched` events (which the subscriptions'
automations run the `submit` deployment on).

Each consumer reconnects by itself after a broker restart (services/broker.py); the
API is uvicorn on 127.0.0.1 unless told otherwise.
"""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvicorn

from storeflow.blocks.config import StoreflowConfig
from storeflow.models.listener_settings import ListenerSettings
from storeflow.services.api import create_app
from storeflow.services.heartbeats import HeartbeatConsumer
from storeflow.services.matcher import FeedMatcher
from storeflow.services.run_mirror import RunMirror
from storeflow.services.status import StatusConsumer
from storeflow.services.watcher import SpaceWatcher

log = logging.getLogger("storeflow.services.serve")


@dataclass
class Services:
    heartbeats: HeartbeatConsumer
    statuses: StatusConsumer
    mirror: RunMirror
    api: uvicorn.Server
    api_thread: threading.Thread
    watcher: SpaceWatcher | None
    matcher: FeedMatcher | None


def api_address(settings: ListenerSettings, host: str | None, port: int | None) -> tuple[str, int]:
    """Where to listen: as given, else the host and port of the URL jobs carry."""
    url = urlsplit(settings.api_url)
    return host or url.hostname or "127.0.0.1", port or url.port or 8787


@contextmanager
def running(
    config: StoreflowConfig,
    settings: ListenerSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    watch: bool = True,
    match: bool = True,
    startup_timeout: float = 30,
) -> Iterator[Services]:
    """Start the consumers, the API, (`watch`) the spaces' watcher and (`match`) the
    feed matcher; stop them all when the block ends.

    The matcher does not hold up the start: it reads the Prefect server's event log
    from a little before now, so file events that arrive while the server is still
    coming up (or while this process was down) are matched when it answers; its claims
    in the database make a replay submit nothing twice."""
    database_url = config.database_url
    mirror = RunMirror(database_url).start()
    heartbeats = HeartbeatConsumer(
        settings.broker_url, database_url, queue=settings.heartbeat_queue
    )
    statuses = StatusConsumer(settings.broker_url, database_url, mirror, queue=settings.reply_queue)
    bind_host, bind_port = api_address(settings, host, port)
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host=bind_host, port=bind_port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="api", daemon=True)
    watcher = SpaceWatcher(config) if watch else None
    matcher = FeedMatcher(config) if match else None
    try:
        if watcher is not None:
            watcher.start()
        if matcher is not None:
            matcher.start(wait=False)
        heartbeats.start(startup_timeout)
        statuses.start(startup_timeout)
        thread.start()
        if not _wait(lambda: server.started, startup_timeout):
            raise TimeoutError(f"the API did not start on {bind_host}:{bind_port}")
        log.info("listener services up; API on http://%s:%s/", bind_host, bind_port)
        yield Services(heartbeats, statuses, mirror, server, thread, watcher, matcher)
    finally:
        if matcher is not None:
            matcher.stop()
        server.should_exit = True
        if thread.is_alive():
            thread.join(10)
        statuses.stop()
        heartbeats.stop()
        mirror.stop()
        if watcher is not None:
            watcher.stop()


def _wait(probe: Callable[[], bool], timeout: float) -> bool:
    stop = threading.Event()
    waited = 0.0
    while waited < timeout:
        if probe():
            return True
        stop.wait(0.05)
        waited += 0.05
    return False


def serve_forever(
    config: StoreflowConfig,
    settings: ListenerSettings,
    host: str | None,
    port: int | None,
    *,
    match: bool = True,
) -> None:
    """Run until interrupted (Ctrl-C or SIGTERM through uvicorn)."""
    with running(config, settings, host=host, port=port, match=match) as services:
        services.api_thread.join()
