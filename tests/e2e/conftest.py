"""A real `prefect server start` shared by a module's tests, and the installed `storeflow`."""

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def server_started(work: Path, args: list[str], **settings: str) -> Iterator[dict[str, str]]:
    """`storeflow server start ARGS` in a private home (`settings` added to its
    environment); yields the shell's environment with PREFECT_API_URL set; stopped with
    `storeflow server stop` (the PIDs it recorded)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "STOREFLOW_"))}
    env = {
        **base,
        "STOREFLOW_HOME": str(work / "home"),
        "PREFECT_HOME": str(work / "prefect-home"),
        "STOREFLOW_WARM": "off",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **settings,
    }
    started = run_command([STOREFLOW, "server", "start", *args], env, work, 900)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        api_url = started.stdout.split("PREFECT_API_URL=")[1].split()[0]
        yield {**env, "PREFECT_API_URL": api_url}
    finally:
        run_command([STOREFLOW, "server", "stop"], env, work, 120)


def asyncpg_url(database: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


@contextmanager
def storeflow_stack(
    work: Path, databases: str, workers: int, worker_limit: int, **settings: str
) -> Iterator[dict[str, str]]:
    """`storeflow server start --workers N --worker-limit L`, Prefect's and storeflow's
    databases on fresh PostgreSQL databases named after `databases` (dropped at the end).
    A worker limit keeps the first worker to poll from taking every run."""
    with (
        scratch_database(f"{databases}_prefect") as prefect_db,
        scratch_database(f"{databases}_resources") as resources_db,
    ):
        resources = f"postgresql+psycopg://postgres@127.0.0.1:5432/{resources_db}"
        args = [
            "--workers", str(workers), "--worker-limit", str(worker_limit),
            "--database-url", resources, "--prefect-database-url", asyncpg_url(prefect_db),
        ]  # fmt: skip
        with server_started(work, args, STOREFLOW_DATABASE_URL=resources, **settings) as env:
            yield env
