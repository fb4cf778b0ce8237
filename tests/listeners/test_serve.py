"""`storeflow listeners serve`: one command starts the consumers and the API on
127.0.0.1; a heartbeat makes a listener, the API refuses an unknown key; SIGINT stops it."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.listeners.broker import delete_queues, heartbeat, publish, unique, wait_for
from tests.listeners.extractor import free_port


def test_listeners_serve_runs_the_consumers_and_the_api(tmp_path: Path) -> None:
    port = free_port()
    heartbeats, replies = unique("storeflow.test-heartbeats"), unique("storeflow.test-replies")
    env = {
        **os.environ,
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "STOREFLOW_API_URL": f"http://127.0.0.1:{port}/",
        "STOREFLOW_HEARTBEAT_QUEUE": heartbeats,
        "STOREFLOW_REPLY_QUEUE": replies,
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "storeflow.cli.main", "listeners", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def answered() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/v2/files/1", timeout=2)
            except httpx.TransportError:
                return None

        refused = wait_for(answered, 90, "the API")
        assert refused.status_code == 401
        wrong = httpx.get(
            f"http://127.0.0.1:{port}/api/listeners", headers={"X-API-KEY": "nope"}, timeout=5
        )
        assert wrong.status_code == 401

        name = unique("served")
        publish("extractors", "", heartbeat(name))

        def listed_names() -> list[str] | None:
            shown = subprocess.run(
                [sys.executable, "-m", "storeflow.cli.main", "listener", "list", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            names = [v["name"] for v in json.loads(shown.stdout or "[]")]
            return names if name in names else None

        assert wait_for(listed_names, 60, "the served heartbeat") == [name]
    finally:
        os.kill(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)
            log.close()
            delete_queues(heartbeats, replies)
    assert process.returncode == 0, (tmp_path / "serve.log").read_text()
