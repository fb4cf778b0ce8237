"""A replica and a tiering profile created with `--config NAME` run on their own
schedules: `storeflow server start` (a real `prefect server start` with its scheduler, a
process worker), nobody starting the runs.

The config they are created with is not the worker's default one (the stack's
`storeflow` document): a schedule that did not carry its config would look for the
replica in the wrong database and end Refused."""

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import asyncpg_url, server_started, storeflow
from tests.e2e.server import api, run_command
from tests.prefect_backend import scratch_database

pytestmark = pytest.mark.e2e

# The scheduler service looks ahead every 60 s and a 60 s interval is the shortest a
# schedule takes: the first run is due within about two minutes of the create; a loaded
# 2-core machine gets a generous bound.
FIRE_SECONDS = 600
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`storeflow server start` with one worker, Prefect's database on PostgreSQL."""
    work = tmp_path_factory.mktemp("schedules-stack")
    with scratch_database("storeflow_e2e_schedules") as database:
        args = ["--workers", "1", "--prefect-database-url", asyncpg_url(database)]
        with server_started(work, args) as env:
            yield env


def save_config(env: dict[str, str], name: str, home: Path) -> None:
    """A StoreflowConfig document of its own (storage root and SQLite database under
    `home`), saved on the stack's server as an admin would under Blocks."""
    script = (
        "import sys\n"
        "from pydantic import SecretStr\n"
        "from storeflow.blocks.config import StoreflowConfig\n"
        "config = StoreflowConfig()\n"
        "config.storage.root = sys.argv[2] + '/storage'\n"
        "config.database.url = SecretStr('sqlite:///' + sys.argv[2] + '/storeflow.db')\n"
        "config.save(sys.argv[1])\n"
    )
    saved = run_command([sys.executable, "-c", script, name, str(home)], env, home.parent, 120)
    assert saved.returncode == 0, saved.stdout + saved.stderr


def ok(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = storeflow(env, *args, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def first_scheduled_run(api_url: str, deployment: str, seconds: float) -> dict[str, Any]:
    """The first run the schedule of `deployment` (`flow/name`) made, once it ended."""
    found = api(f"{api_url}/deployments/name/{deployment}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        runs = api(
            f"{api_url}/flow_runs/filter",
            "POST",
            {
                "deployments": {"id": {"any_": [found["id"]]}},
                "sort": "EXPECTED_START_TIME_ASC",
                "limit": 1,
            },
        )
        if runs and runs[0]["state"] and runs[0]["state"]["type"] in FINAL:
            return dict(runs[0])
        time.sleep(2)
    raise TimeoutError(f"no run of {deployment} ended within {seconds}s")


# The stack's start deploys everything (minutes on a loaded machine), then the schedules
# need a few minutes to fire.
@pytest.mark.timeout(2400)
def test_replica_and_profile_made_with_config_sync_on_their_schedule(
    stack: dict[str, str], tmp_path: Path
) -> None:
    api_url = stack["PREFECT_API_URL"]
    site = tmp_path / "site-two"
    site.mkdir()
    save_config(stack, "site-two", site)
    on_site = ("--config", "site-two")

    assert ok(stack, "space", "create", "synced", *on_site)["state"] == "Active"
    (site / "storage" / "spaces" / "synced" / "doc.txt").write_text("v1")
    remote = tmp_path / "offsite"
    remote.mkdir()
    made = ok(stack, "provider", "create", "offsite", "--directory", str(remote), *on_site)
    assert made["state"] == "Active", made
    made = ok(stack, "replica", "create", "every-minute", "--space", "synced",
              "--provider", "offsite", "--direction", "upstream", "--interval", "60",
              *on_site)  # fmt: skip
    assert made["state"] == "Active", made
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    (fast / "cold.bin").write_bytes(b"cold")
    made = ok(stack, "profile", "create", "tiers", "--pool", f"fast={fast}",
              "--pool", f"slow={slow}", "--rule", "", "--interval", "60",
              *on_site)  # fmt: skip
    assert made["state"] == "Active", made

    synced = first_scheduled_run(api_url, "replica-sync/every-minute", FIRE_SECONDS)
    assert synced["auto_scheduled"], synced  # the schedule made it, nobody else
    assert (synced["state"]["type"], synced["state"]["name"]) == ("COMPLETED", "Synced"), synced
    assert (remote / "synced" / "doc.txt").read_text() == "v1"

    tiered = first_scheduled_run(api_url, "profile-tier/tiers", FIRE_SECONDS)
    assert tiered["auto_scheduled"], tiered
    assert (tiered["state"]["type"], tiered["state"]["name"]) == ("COMPLETED", "Tiered"), tiered
    assert (slow / "cold.bin").read_bytes() == b"cold" and not (fast / "cold.bin").exists()
