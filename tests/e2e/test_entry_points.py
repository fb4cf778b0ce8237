"""Each verb family through the installed `storeflow` against a real `prefect server
start`, as a user's shell runs it; and the lifecycle lock across processes on PostgreSQL.

(The warm runner's family is tests/warm/test_runner.py, the same way.)"""

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ROOT, STOREFLOW, storeflow
from tests.e2e.server import api
from tests.prefect_backend import scratch_database
from tests.transfer.conftest import local_def

pytestmark = pytest.mark.e2e


def ok(env: dict[str, str], *args: str, code: int = 0) -> Any:
    """Run `storeflow ARGS --json`; check the exit code; the one JSON object it printed."""
    done = storeflow(env, *args, "--json")
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def flow_run(env: dict[str, str], run_id: str) -> dict[str, Any]:
    """The run as the server holds it: proof the command ran against that server."""
    return dict(api(f"{env['PREFECT_API_URL']}/flow_runs/{run_id}"))


def test_template_space_and_snapshot_verbs(user_shell: dict[str, str], tmp_path: Path) -> None:
    env = user_shell
    storage = Path(env["STOREFLOW_HOME"]) / "storage"
    skeleton = tmp_path / "skeleton"
    skeleton.mkdir()
    (skeleton / "README").write_text("start here\n")

    made = ok(env, "template", "create", "starter", "--source", str(skeleton))
    assert made["state"] == "Active"
    assert flow_run(env, made["flow_run_id"])["name"] == "template-create/starter"
    assert [t["name"] for t in ok(env, "template", "list")] == ["starter"]

    space = ok(env, "space", "create", "alpha", "--quota", "10G", "--template", "starter")
    assert space["state"] == "Active"
    assert (storage / "spaces" / "alpha" / "README").read_text() == "start here\n"
    shown = ok(env, "space", "show", "alpha")
    resized = ok(env, "space", "update", "alpha", "--quota", "20G", "--etag", str(shown["etag"]))
    assert resized["state"] == "Active"
    stale = ok(env, "space", "update", "alpha", "--quota", "30G", "--etag", str(shown["etag"]),
               code=1)  # fmt: skip
    assert stale["state"] == "Refused" and "etag" in stale["message"]
    assert flow_run(env, stale["flow_run_id"])["state"]["name"] == "Refused"
    assert ok(env, "space", "show", "alpha")["spec"]["quota"] == 20 * 1024**3
    assert [s["name"] for s in ok(env, "space", "list")] == ["alpha"]

    snap = ok(env, "snapshot", "create", "alpha", "day-1")
    assert snap["state"] == "Active"
    assert [s["name"] for s in ok(env, "snapshot", "list", "alpha")] == ["day-1"]
    assert ok(env, "snapshot", "delete", "alpha", "day-1")["state"] == "Deleted"
    bad = storeflow(env, "space", "create", "../escape")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "name" in bad.stderr


def test_reconcile_verb(user_shell: dict[str, str]) -> None:
    env = user_shell
    assert ok(env, "space", "create", "kept")["state"] == "Active"
    spaces = Path(env["STOREFLOW_HOME"]) / "storage" / "spaces"
    (spaces / "found").mkdir()  # made behind storeflow's back
    (spaces / "kept").rename(spaces / "kept-moved")
    done = ok(env, "reconcile")
    assert done["state_type"] == "COMPLETED", done
    by_name = {s["name"]: s["status"] for s in ok(env, "space", "list")}
    assert by_name["found"] == "ACTIVE" and by_name["kept"] == "ERRORED"


def test_hooks_periodic_verb(user_shell: dict[str, str]) -> None:
    env = {**user_shell, "STOREFLOW_HOOK_DRIVERS": "storeflow.tasks.hook_drivers.audit:AuditHook"}
    assert ok(env, "space", "create", "audited", "--quota", "1G")["state"] == "Active"
    done = ok(env, "hooks", "periodic")
    assert done["state_type"] == "COMPLETED", done
    lines = (Path(env["STOREFLOW_HOME"]) / "audit.jsonl").read_text().splitlines()
    periodic = [json.loads(line) for line in lines if '"periodic"' in line]
    assert len(periodic) == 1, lines
    assert "audited" in json.dumps(periodic[0])


def test_schema_verb(user_shell: dict[str, str]) -> None:
    done = storeflow(user_shell, "schema", "space")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    assert {"name", "quota", "template"} <= set(schema["properties"])
    unknown = storeflow(user_shell, "schema", "nonsense")
    assert unknown.returncode == 2 and unknown.stdout == "" and "nonsense" in unknown.stderr


def test_callback_verb(user_shell: dict[str, str], tmp_path: Path) -> None:
    cb = tmp_path / "cb.py"
    cb.write_text(
        "import utils\ndef run(req):\n"
        "    return utils.get_node_info(req).metadata.get('owner') == 'lab'\n"
    )
    data = tmp_path / "file.txt"
    data.write_text("x")
    base = ["callback", "run", "--lang", "python", "--file", str(cb), "--path", str(data)]
    truthy = storeflow(user_shell, *base, "--metadata", "owner=lab")
    assert truthy.returncode == 0, truthy.stderr
    assert json.loads(truthy.stdout)["result"] is True
    falsy = storeflow(user_shell, *base, "--metadata", "owner=other")
    assert falsy.returncode == 1 and json.loads(falsy.stdout)["result"] is False


def test_transfer_verb(user_shell: dict[str, str], tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    (src / "a.csv").write_bytes(b"1,2\n")
    definition = tmp_path / "nightly.json"
    definition.write_text(json.dumps(local_def(src, dest)))
    done = ok(user_shell, "transfer", "run", str(definition))
    assert done["state"] == "Delivered", done
    assert (dest / "a.csv").read_bytes() == b"1,2\n"
    assert flow_run(user_shell, done["flow_run_id"])["state"]["name"] == "Delivered"


def test_provider_replica_and_profile_verbs(user_shell: dict[str, str], tmp_path: Path) -> None:
    env = user_shell
    remote = tmp_path / "remote"
    remote.mkdir()
    assert ok(env, "space", "create", "synced")["state"] == "Active"
    space = Path(env["STOREFLOW_HOME"]) / "storage" / "spaces" / "synced"
    (space / "doc.txt").write_text("v1")
    assert ok(env, "provider", "create", "backup", "--directory", str(remote))["state"] == "Active"
    made = ok(env, "replica", "create", "nightly", "--space", "synced", "--provider", "backup",
              "--direction", "upstream", "--interval", "1d")  # fmt: skip
    assert made["state"] == "Active", made
    # Its schedule lives on the server, as a deployment of its own.
    deployments = api(f"{env['PREFECT_API_URL']}/deployments/filter", "POST", {})
    scheduled = [d for d in deployments if d["name"] == "nightly"]
    assert len(scheduled) == 1 and scheduled[0]["schedules"], deployments
    synced = ok(env, "replica", "sync", "nightly")
    assert synced["state_type"] == "COMPLETED", synced
    assert (remote / "synced" / "doc.txt").read_text() == "v1"

    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    (fast / "old.bin").write_bytes(b"cold")
    made = ok(env, "profile", "create", "tiers", "--pool", f"fast={fast}", "--pool",
              f"slow={slow}", "--rule", "", "--interval", "1d")  # fmt: skip
    assert made["state"] == "Active", made
    tiered = ok(env, "profile", "tier", "tiers")
    assert tiered["state_type"] == "COMPLETED", tiered
    assert (slow / "old.bin").read_bytes() == b"cold" and not (fast / "old.bin").exists()


def test_lock_across_processes_on_postgresql(user_shell: dict[str, str]) -> None:
    """Several `storeflow` processes race on one space in a PostgreSQL resource database:
    with one etag exactly one wins; without one, every run applies and none interleave."""
    with scratch_database("storeflow_e2e_resources") as database:
        env = {
            **user_shell,
            "STOREFLOW_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        }
        assert ok(env, "space", "create", "hot")["state"] == "Active"
        etag = ok(env, "space", "show", "hot")["etag"]

        def race(extra: list[str], n: int) -> list[tuple[int, dict[str, Any], str]]:
            processes = [
                subprocess.Popen(
                    [STOREFLOW, "space", "update", "hot", "--quota", f"{i + 1}M", *extra, "--json"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                    text=True,
                )
                for i in range(n)
            ]
            results = []
            for i, process in enumerate(processes):
                out, err = process.communicate(timeout=300)
                results.append((i, json.loads(out.strip().splitlines()[-1]), err))
                assert process.returncode == (0 if results[-1][1]["state"] == "Active" else 1)
            return results

        results = race(["--etag", str(etag)], 5)
        winners = [i for i, out, _ in results if out["state"] == "Active"]
        assert len(winners) == 1, results
        assert all(
            out["state"] == "Refused" and "etag" in out["message"]
            for i, out, _ in results
            if i not in winners
        ), results
        space = ok(env, "space", "show", "hot")
        assert space["etag"] == etag + 2 and space["lock_owner"] is None
        assert space["spec"]["quota"] == (winners[0] + 1) * 1024**2

        results = race([], 4)
        assert [out["state"] for _, out, _ in results] == ["Active"] * 4, results
        after = ok(env, "space", "show", "hot")
        assert after["etag"] == space["etag"] + 2 * 4  # each took it and released it once
        assert after["status"] == "ACTIVE" and after["lock_owner"] is None
        assert os.path.isdir(Path(env["STOREFLOW_HOME"]) / "storage" / "spaces" / "hot")
