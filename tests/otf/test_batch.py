"""OTF execution tasks and batches as Prefect flows: a command's exit status and output,
its timeout; a batch of five with a dependency diamond (one failing with
continue_on_fail, one timing out) run as child flow runs, then rerun: only what failed
runs again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.batches import batch
from storeflow.flows.executions import execution
from storeflow.models import executions
from storeflow.models.db import session_scope
from storeflow.models.otf import ExecutionDefinition


def write_task(root: Path, task_id: str, definition: dict[str, Any]) -> None:
    (root / f"{task_id}.json").write_text(json.dumps(definition))


def shell(work: Path, command: str) -> dict[str, Any]:
    return {
        "type": "execution",
        "directory": str(work),
        "command": command,
        "protocol": {"name": "local"},
    }


def test_execution_exit_status_output_and_timeout(tmp_path: Path) -> None:
    ok = execution(
        definition=ExecutionDefinition.model_validate(shell(tmp_path, "echo hi > out; pwd")),
        name="say-hi",
        return_state=True,
    )
    assert ok.is_completed() and ok.name == "Executed", ok.message
    assert (tmp_path / "out").read_text() == "hi\n"
    bad = execution(
        definition=ExecutionDefinition.model_validate(shell(tmp_path, "echo nope; exit 3")),
        name="exit-3",
        return_state=True,
    )
    assert bad.is_failed() and bad.name == "Errored"
    assert "exited with status 3 (last output: nope)" in (bad.message or "")
    started = time.monotonic()
    slow = execution(
        definition=ExecutionDefinition.model_validate(
            shell(tmp_path, "sleep 60 & sleep 60; echo never > late")
        ),
        name="too-slow",
        timeout=1.5,
        return_state=True,
    )
    assert slow.is_failed() and slow.name == "TimedOut", slow.message
    assert time.monotonic() - started < 20
    assert not (tmp_path / "late").exists()
    with session_scope(resolve_config().database_url) as session:
        recorded = executions.latest(session, "too-slow")
    assert recorded is not None and recorded.outcome == "TimedOut"


def diamond(tmp_path: Path) -> tuple[Path, Path]:
    """1 -> (2, 3) -> 4, and 5 alone; 2 fails (continue_on_fail) until `fixed` exists,
    5 outlasts its timeout until then.  Each task appends its name to `ran`."""
    root, work = tmp_path / "cfg", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    write_task(root, "first", shell(work, "echo first >> ran"))
    write_task(root, "flaky", shell(work, "echo flaky >> ran; test -e fixed"))
    write_task(root, "steady", shell(work, "echo steady >> ran"))
    write_task(root, "join", shell(work, "echo join >> ran"))
    write_task(root, "slow", shell(work, "echo slow >> ran; test -e fixed || sleep 60"))
    write_task(
        root,
        "nightly",
        {
            "type": "batch",
            "tasks": [
                {"order_id": 1, "task_id": "first"},
                {"order_id": 2, "task_id": "flaky", "dependencies": [1], "continue_on_fail": True},
                {"order_id": 3, "task_id": "steady", "dependencies": [1]},
                {"order_id": 4, "task_id": "join", "dependencies": [2, 3]},
                {"order_id": 5, "task_id": "slow", "timeout": 2},
            ],
        },
    )
    return root, work


def children(state: State[Any]) -> dict[str, str]:
    """The batch run's child flow runs: name -> state name."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(
                    any_=[state.state_details.flow_run_id]
                )
            )
        )
    return {r.name: (r.state.name or "") if r.state else "" for r in runs}


def test_batch_diamond_then_rerun_completes_only_what_failed(tmp_path: Path) -> None:
    root, work = diamond(tmp_path)
    first = batch(name="nightly", config_dir=str(root), return_state=True)
    assert first.is_failed(), first.message
    assert "task 2 (flaky) failed (continued)" in (first.message or "")
    assert "task 5 (slow) timed out" in (first.message or "")
    ran = (work / "ran").read_text().split()
    assert sorted(ran) == ["first", "flaky", "join", "slow", "steady"]
    # The diamond's top before its sides (5, with no dependency, runs alongside).
    assert ran.index("first") < min(ran.index("flaky"), ran.index("steady"))
    assert ran.index("join") > max(ran.index("flaky"), ran.index("steady"))
    assert children(first) == {
        "execution/first": "Executed",
        "execution/flaky": "Errored",
        "execution/steady": "Executed",
        "execution/join": "Executed",
        "execution/slow": "TimedOut",
    }

    (work / "fixed").touch()
    (work / "ran").unlink()
    second = batch(name="nightly", config_dir=str(root), return_state=True)
    assert second.is_completed(), second.message
    assert sorted((work / "ran").read_text().split()) == ["flaky", "slow"]
    assert "5 tasks completed (3 completed in the previous run)" in (second.message or "")
    assert children(second) == {"execution/flaky": "Executed", "execution/slow": "Executed"}

    # After a batch that completed, the next run runs everything again.
    (work / "ran").unlink()
    third = batch(name="nightly", config_dir=str(root), return_state=True)
    assert third.is_completed(), third.message
    assert len((work / "ran").read_text().split()) == 5


def test_batch_with_a_failed_dependency_does_not_run_its_dependants(tmp_path: Path) -> None:
    root, work = tmp_path / "cfg", tmp_path / "work"
    root.mkdir()
    work.mkdir()
    write_task(root, "breaks", shell(work, "exit 1"))
    write_task(root, "after", shell(work, "echo after >> ran"))
    write_task(
        root,
        "chain",
        {
            "type": "batch",
            "tasks": [
                {"order_id": 1, "task_id": "breaks"},
                {"order_id": 2, "task_id": "after", "dependencies": [1]},
            ],
        },
    )
    state = batch(name="chain", config_dir=str(root), return_state=True)
    assert state.is_failed()
    assert state.message == "batch/chain: task 1 (breaks) failed; not run: 2 (after)"
    assert not (work / "ran").exists()


def test_batch_with_a_missing_task_is_refused_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "cfg"
    root.mkdir()
    write_task(root, "lone", {"type": "batch", "tasks": [{"order_id": 1, "task_id": "ghost"}]})
    state = batch(name="lone", config_dir=str(root), return_state=True)
    assert state.is_failed() and state.name == "Refused"
    assert "ghost" in (state.message or "")


def test_cli_dispatches_by_type(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storeflow.cli.app import app

    root, work = diamond(tmp_path)
    (work / "fixed").touch()
    runner = CliRunner()
    result = runner.invoke(app, ["transfer", "run", "-t", "nightly", "-c", str(root), "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["flow_run_name"] == "batch/nightly"
    assert outcome["state"] == "Completed"
    assert sorted((work / "ran").read_text().split()) == [
        "first", "flaky", "join", "slow", "steady"
    ]  # fmt: skip
    # A FILE: an execution runs by itself, exit 1 and one line when its command fails.
    failing = tmp_path / "stop.json"
    failing.write_text(json.dumps(shell(work, "exit 4")))
    result = runner.invoke(app, ["transfer", "run", str(failing)])
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == "Errored: execution/stop: exited with status 4"


def test_batch_runs_a_transfer_then_an_execution_that_uses_its_files(tmp_path: Path) -> None:
    root, src, dest = tmp_path / "cfg", tmp_path / "src", tmp_path / "dest"
    for d in (root, src, dest):
        d.mkdir()
    (src / "data.csv").write_text("1,2\n")
    write_task(
        root,
        "fetch",
        {
            "type": "transfer",
            "source": {"directory": str(src), "fileRegex": ".*", "protocol": {"name": "local"}},
            "destination": [{"directory": str(dest), "protocol": {"name": "local"}}],
        },
    )
    write_task(root, "count", shell(dest, "wc -l < data.csv > lines"))
    write_task(
        root,
        "daily",
        {
            "type": "batch",
            "tasks": [
                {"order_id": 1, "task_id": "fetch", "timeout": 120},
                {"order_id": 2, "task_id": "count", "dependencies": [1]},
            ],
        },
    )
    state = batch(name="daily", config_dir=str(root), return_state=True)
    assert state.is_completed(), state.message
    assert (dest / "lines").read_text().strip() == "1"
    assert children(state) == {"transfer/fetch": "Delivered", "execution/count": "Executed"}
