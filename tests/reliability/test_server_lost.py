"""The Prefect server lost in the middle of a run: the work that was done is reported
as done, in one line that says the server went away, within a bounded time; the
resource database has the outcome."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.server import PREFECT, free_port, started, stop, wait_until_healthy
from tests.prefect_backend import scratch_database

ROOT = Path(__file__).resolve().parents[2]
STOREFLOW = str(Path(sys.executable).with_name("storeflow"))


def test_a_server_lost_after_the_work_is_one_line_and_the_work_stands(tmp_path: Path) -> None:
    here, go = tmp_path / "here", tmp_path / "go"
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with scratch_database("storeflow_lost_prefect") as database:
        mine = ("PREFECT_", "STOREFLOW_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
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
            client_env = {
                **env,
                "PREFECT_API_URL": api_url,
                "STOREFLOW_HOOK_DRIVERS": "tests.reliability.blocking_hooks:HoldAfterWork",
                "HOLD_HERE": str(here),
                "HOLD_GO": str(go),
                "PYTHONPATH": str(ROOT),
            }
            command = subprocess.Popen(
                [STOREFLOW, "space", "create", "survivor", "--quota", "1G"],
                env=client_env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                deadline = time.monotonic() + 240
                while not here.exists():
                    assert command.poll() is None, command.communicate()
                    assert time.monotonic() < deadline, "the run never reached its post hook"
                    time.sleep(0.1)
                stop(server)  # the work is done and recorded: now the server goes
                lost_at = time.monotonic()
                go.write_text("go")
                out, err = command.communicate(timeout=180)
                waited = time.monotonic() - lost_at
            finally:
                if command.poll() is None:
                    os.killpg(command.pid, 9)
                    command.wait(timeout=30)

    lines = [line for line in err.splitlines() if line.strip()]
    assert command.returncode == 1, (out, err)
    assert len(lines) == 1 and "server" in lines[0].lower(), err
    assert waited < 120, f"the command waited {waited:.0f}s after the server went away"
    listed = subprocess.run(
        [STOREFLOW, "space", "show", "survivor", "--json"],
        env={k: v for k, v in client_env.items() if k != "PREFECT_API_URL"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = json.loads(listed.stdout)
    assert shown["status"] == "ACTIVE" and shown["lock_owner"] is None, shown
