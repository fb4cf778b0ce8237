"""Session-wide setup: an isolated Prefect on PostgreSQL, a storeflow home per test."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prefect_backend import (
    pg_available,
    prefect_environment,
    scratch_database,
    stop_ephemeral_prefect,
)

# A Prefect server already running (`prefect server start`, its own database): the
# session uses it instead of starting an ephemeral one.
SHARED_SERVER_ENV = "STOREFLOW_TEST_PREFECT_API_URL"


def _shared_prefect_server(api_url: str) -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        yield api_url


@pytest.fixture(scope="session", autouse=True)
def prefect_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not pg_available():
        pytest.fail(
            "PostgreSQL is not reachable on 127.0.0.1:5432; run scripts/bootstrap.sh to start it",
            pytrace=False,
        )
    shared = os.environ.get(SHARED_SERVER_ENV)
    if shared:
        # scripts/mutation.py runs the same tests once per mutant: one server for all.
        yield from _shared_prefect_server(shared)
        return
    home = tmp_path_factory.mktemp("prefect-home")
    with scratch_database("storeflow_test_prefect") as database:
        env = prefect_environment(home, database)
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        os.environ.pop("PREFECT_API_URL")
        os.environ.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        try:
            with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                yield database
        finally:
            stop_ephemeral_prefect()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(autouse=True)
def storeflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own storeflow home: storage root, SQLite database, audit log."""
    home = tmp_path / "storeflow-home"
    monkeypatch.setenv("STOREFLOW_HOME", str(home))
    for var in (
        "STOREFLOW_DATABASE_URL",
        "STOREFLOW_STORAGE_ROOT",
        "STOREFLOW_HOOK_DRIVERS",
        "STOREFLOW_CONFIG_BLOCK",
    ):
        monkeypatch.delenv(var, raising=False)
    return home
