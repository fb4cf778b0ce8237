"""An automation made from storeflow's events fires: on a real `prefect server start`
(its triggers and actions services), a refused space update calls a webhook served
here on 127.0.0.1, as the README's example shows."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from tests.e2e.server import (
    PREFECT,
    free_port,
    run_command,
    started,
    wait_until_healthy,
)
from tests.prefect_backend import scratch_database

ROOT = Path(__file__).resolve().parents[2]
STOREFLOW = str(Path(PREFECT).with_name("storeflow"))

# What the README shows: a webhook block and an automation on storeflow's refusals.
MAKE_AUTOMATION = """
import sys
from pydantic import SecretStr
from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import EventTrigger, Posture

Webhook(method="POST", url=SecretStr(sys.argv[1])).save("storeflow-alerts", overwrite=True)
hook = Webhook.load("storeflow-alerts")
Automation(
    name="space-changes-refused",
    trigger=EventTrigger(
        expect={"storeflow.space.*.refused"},
        posture=Posture.Reactive,
        threshold=1,
    ),
    actions=[
        CallWebhook(
            block_document_id=hook._block_document_id,
            payload='{"event": "{{ event.event }}", "space": "{{ event.resource.name }}"}',
        )
    ],
).create()
"""


class Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Hook.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_refused_space_update_calls_the_webhook(tmp_path: Path) -> None:
    hook_server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook_server.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook_server.server_address[1]}/hook"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        with scratch_database("storeflow_events_prefect") as database:
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOREFLOW_"))
            }
            env.update(
                {
                    "PREFECT_HOME": str(tmp_path / "prefect-home"),
                    "PREFECT_API_DATABASE_CONNECTION_URL": (
                        f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
                    ),
                    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "DO_NOT_TRACK": "1",
                    "PREFECT_UI_ENABLED": "false",
                    "STOREFLOW_HOME": str(tmp_path / "storeflow"),
                    "STOREFLOW_WARM": "off",
                }
            )
            server_cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
            with started(server_cmd, env, tmp_path / "server.log", ROOT) as server:
                wait_until_healthy(api_url, server, tmp_path / "server.log", 180)
                client_env = {**env, "PREFECT_API_URL": api_url}
                made = run_command(
                    [str(Path(PREFECT).with_name("python")), "-c", MAKE_AUTOMATION, hook_url],
                    client_env,
                    tmp_path,
                    timeout=120,
                )
                assert made.returncode == 0, made.stderr
                storeflow = [STOREFLOW, "space"]
                created = run_command([*storeflow, "create", "watched"], client_env, tmp_path, 300)
                assert created.returncode == 0, created.stderr
                stale = run_command(
                    [*storeflow, "update", "watched", "--quota", "1G", "--etag", "1"],
                    client_env,
                    tmp_path,
                    300,
                )
                assert stale.returncode == 1 and "Refused" in stale.stderr, stale.stderr

                deadline = time.monotonic() + 90
                while not Hook.received and time.monotonic() < deadline:
                    time.sleep(0.5)
                log = (tmp_path / "server.log").read_text()[-3000:]
                assert Hook.received, f"the webhook was never called; server log:\n{log}"
                assert Hook.received[0] == {
                    "event": "storeflow.space.update.refused",
                    "space": "watched",
                }
    finally:
        hook_server.shutdown()
        hook_server.server_close()
