"""End to end: prefect server start, prefect deploy --all, a process worker,
runs created through the REST API, final states read back through it."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import (
    PREFECT,
    api,
    free_port,
    run_cli,
    started,
    wait_for_final_state,
    wait_until_healthy,
)
from tests.prefect_backend import scratch_database

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def create_run(api_url: str, deployment: str, parameters: dict) -> str:
    dep = api(f"{api_url}/deployments/name/{deployment}/{deployment}")
    run = api(
        f"{api_url}/deployments/{dep['id']}/create_flow_run", "POST", {"parameters": parameters}
    )
    return str(run["id"])


def test_space_lifecycle_through_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    storeflow_home = tmp_path / "storeflow"
    with scratch_database("storeflow_e2e_prefect") as database:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PREFECT_", "STOREFLOW_"))
        }
        env.update(
            {
                "PREFECT_HOME": str(tmp_path / "prefect-home"),
                "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_UI_ENABLED": "false",
                "STOREFLOW_HOME": str(storeflow_home),
                "PWD": str(ROOT),
            }
        )
        server_cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        with started(server_cmd, env, tmp_path / "server.log", ROOT) as server:
            wait_until_healthy(api_url, server, tmp_path / "server.log", 180)
            client_env = {**env, "PREFECT_API_URL": api_url}
            run_cli(
                ["work-pool", "create", "storeflow-process", "--type", "process"], client_env, ROOT
            )
            deployed = run_cli(["--no-prompt", "deploy", "--all"], client_env, ROOT)
            assert "space-create" in deployed

            worker_cmd = [PREFECT, "worker", "start", "--pool", "storeflow-process", "--limit", "2"]
            with started(worker_cmd, client_env, tmp_path / "worker.log", ROOT):
                run_id = create_run(
                    api_url, "space-create", {"spec": {"name": "e2e-space", "quota": "1G"}}
                )
                run = wait_for_final_state(api_url, run_id, 240)
                assert run["state"]["type"] == "COMPLETED", (tmp_path / "worker.log").read_text()
                assert run["state"]["name"] == "Active"
                assert run["name"] == "space-create/e2e-space"
                assert (storeflow_home / "storage" / "spaces" / "e2e-space").is_dir()

                stale = create_run(
                    api_url,
                    "space-update",
                    {"name": "e2e-space", "etag": 1, "changes": {"quota": "2G"}},
                )
                refused = wait_for_final_state(api_url, stale, 240)
                assert refused["state"]["type"] == "FAILED"
                assert refused["state"]["name"] == "Refused"
                assert "etag 1 given" in refused["state"]["message"]

                # The CLI's --submit creates a run of the deployment and returns at once.
                storeflow = str(Path(PREFECT).with_name("storeflow"))
                submitted = subprocess.run(
                    [
                        storeflow,
                        "space",
                        "create",
                        "via-cli",
                        "--quota",
                        "5G",
                        "--submit",
                        "--json",
                    ],
                    env=client_env,
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    stdin=subprocess.DEVNULL,
                    check=True,
                )
                cli_run = json.loads(submitted.stdout)["flow_run_id"]
                assert wait_for_final_state(api_url, cli_run, 240)["state"]["name"] == "Active"

                # Custom state names are filterable, as the UI does.
                active = api(
                    f"{api_url}/flow_runs/filter",
                    "POST",
                    {"flow_runs": {"state": {"name": {"any_": ["Active"]}}}},
                )
                assert sorted(r["id"] for r in active) == sorted([run_id, cli_run])
