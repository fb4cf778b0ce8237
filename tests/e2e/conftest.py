"""A real `prefect server start` shared by a module's tests, and the installed `storeflow`."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import PREFECT, free_port, run_command, started, wait_until_healthy
from tests.prefect_backend import scratch_database

STOREFLOW = str(Path(sys.executable).with_name("storeflow"))
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on 127.0.0.1 and a free port, on its own PostgreSQL database;
    yields the environment a user's shell would have (PREFECT_API_URL set, nothing of
    this test session's own Prefect or storeflow settings)."""
    assert os.access(STOREFLOW, os.X_OK), f"{STOREFLOW} is not installed: run scripts/bootstrap.sh"
    work = tmp_path_factory.mktemp("e2e-server")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOREFLOW_"))}
    with scratch_database("storeflow_e2e_cli") as database:
        env = {
            **base,
            "PREFECT_HOME": str(work / "prefect-home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": (
                f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
            ),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with started(cmd, env, work / "server.log", work) as process:
            wait_until_healthy(api_url, process, work / "server.log", 180)
            yield {**env, "PREFECT_API_URL": api_url}


@pytest.fixture
def user_shell(prefect_server: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """This test's shell: its own storeflow home; no warm runner (tests/warm/ covers it)."""
    return {**prefect_server, "STOREFLOW_HOME": str(tmp_path / "home"), "STOREFLOW_WARM": "off"}


def storeflow(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The installed `storeflow` command, as a user runs it: output captured, no stdin."""
    return run_command([STOREFLOW, *args], env, cwd or ROOT, timeout)
