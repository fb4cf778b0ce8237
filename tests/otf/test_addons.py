"""OTF addons, unmodified: tests/plugins/otf-addons-bucket is an addon written as OTF's
addon guide says (its own JSON schemas, opentaskpy.otflogging, a RemoteTransferHandler
named by its fully qualified class name).  It is installed with opentaskpy (pinned, as
the corpus pins it) into a scratch directory put on sys.path, never into .venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogHandler
from prefect.states import State

from storeflow.flows.transfers import transfer
from tests.otf.opentaskpy_release import VERSION

ADDON = Path(__file__).parents[1] / "plugins" / "otf-addons-bucket"
BUCKET = "opentaskpy.addons.bucket.remotehandlers.bucket.BucketTransfer"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("addon-src") / "otf-addons-bucket"
    shutil.copytree(ADDON, source)  # setuptools writes build/ beside the sources
    target = tmp_path_factory.mktemp("addon-installed")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(target), f"opentaskpy=={VERSION}",
         str(source)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return target


@pytest.fixture(autouse=True)
def addon(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv("OTF_NO_LOG", "1")


def bucket_end(bucket: Path, directory: str, token: str = "t", **more: Any) -> dict[str, Any]:
    return {
        "bucket": str(bucket),
        "directory": directory,
        "protocol": {"name": BUCKET, "credentials": {"token": token}},
        **more,
    }


def run_logs(state: State[Any]) -> list[str]:
    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    return [log.message for log in logs]


def test_addon_source_staged_into_storeflow_delivery(tmp_path: Path) -> None:
    bucket, dest = tmp_path / "bucket", tmp_path / "dest"
    (bucket / "in").mkdir(parents=True)
    (bucket / "in" / "a.csv").write_text("1,2\n")
    (bucket / "in" / "b.csv").write_text("3,4\n")
    (bucket / "in" / "skip.txt").write_text("no")
    dest.mkdir()
    definition = {
        "type": "transfer",
        "source": bucket_end(
            bucket, "in", fileRegex=r".*\.csv", postCopyAction={"action": "delete"}
        ),
        "destination": [{"directory": str(dest), "protocol": {"name": "local"}}],
    }
    state = transfer(otf_definition=definition, name="from-bucket", return_state=True)
    assert state.is_completed() and state.name == "Delivered", state.message
    assert sorted(p.name for p in dest.iterdir()) == ["a.csv", "b.csv"]
    assert (dest / "a.csv").read_text() == "1,2\n"
    # The addon's post-copy action ran after delivery: only the unmatched file is left.
    assert sorted(p.name for p in (bucket / "in").iterdir()) == ["skip.txt"]
    logs = run_logs(state)
    assert "bucket pulled a.csv" in logs and "bucket tidy" in logs, logs


def test_storeflow_source_into_addon_destination(tmp_path: Path) -> None:
    source, bucket = tmp_path / "src", tmp_path / "bucket"
    source.mkdir()
    (source / "r.bin").write_bytes(b"\x00" * 1000)
    definition = {
        "type": "transfer",
        "source": {"directory": str(source), "fileRegex": ".*", "protocol": {"name": "local"}},
        "destination": [bucket_end(bucket, "out")],
    }
    state = transfer(otf_definition=definition, name="to-bucket", return_state=True)
    assert state.is_completed(), state.message
    assert (bucket / "out" / "r.bin").read_bytes() == b"\x00" * 1000


def test_addon_schema_refusal_names_the_field(tmp_path: Path) -> None:
    end = bucket_end(tmp_path, "in", fileRegex=".*")
    del end["protocol"]["credentials"]["token"]
    definition = {
        "type": "transfer",
        "source": end,
        "destination": [{"directory": str(tmp_path / "d"), "protocol": {"name": "local"}}],
    }
    state = transfer(otf_definition=definition, name="bad", return_state=True)
    assert state.is_failed() and state.name == "Refused"
    assert "source.protocol.credentials: 'token' is a required property" in (state.message or "")
    assert not (tmp_path / "d").exists()


def test_addon_return_code_1_is_a_clear_error(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "x").write_text("x")
    definition = {
        "type": "transfer",
        "source": {"directory": str(source), "fileRegex": ".*", "protocol": {"name": "local"}},
        "destination": [bucket_end(tmp_path / "bucket", "out", token="refuse-writes")],
    }
    state = transfer(otf_definition=definition, name="refused-write", return_state=True)
    assert state.is_failed() and state.name == "Errored"
    assert state.message == (
        "transfer/refused-write: opentaskpy.addons.bucket.remotehandlers.bucket."
        "BucketTransfer.push_files_from_worker returned 1 (failure)"
    )


def test_cli_runs_an_addon_definition_from_a_config_dir(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from storeflow.cli.app import app

    bucket, dest, cfg = tmp_path / "bucket", tmp_path / "dest", tmp_path / "cfg"
    (bucket / "in").mkdir(parents=True)
    (bucket / "in" / "one").write_text("1")
    cfg.mkdir()
    dest.mkdir()
    (cfg / "variables.json").write_text(json.dumps({"BUCKET": str(bucket)}))
    task = {
        "type": "transfer",
        "source": {**bucket_end(Path("{{ BUCKET }}"), "in"), "fileRegex": ".*"},
        "destination": [{"directory": str(dest), "protocol": {"name": "local"}}],
    }
    (cfg / "pull.json.j2").write_text(json.dumps(task))
    result = CliRunner().invoke(app, ["transfer", "run", "-t", "pull", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert (dest / "one").read_text() == "1"


EXECUTE = "opentaskpy.addons.bucket.remotehandlers.bucket.BucketExecution"


def addon_execution(bucket: Path, command: str, **more: Any) -> dict[str, Any]:
    return {
        "type": "execution",
        "bucket": str(bucket),
        "command": command,
        "protocol": {"name": EXECUTE},
        **more,
    }


def test_addon_execution_handler_runs_as_the_execution_flow(tmp_path: Path) -> None:
    from storeflow.flows.executions import execution
    from storeflow.models.otf import parse_task

    def go(definition: dict[str, Any], name: str, **params: Any) -> State[Any]:
        parsed = parse_task(definition, name)
        return execution(definition=parsed, name=name, return_state=True, **params)

    ok = go(addon_execution(tmp_path, "touch made.txt"), "make")
    assert ok.is_completed() and ok.name == "Executed", ok.message
    assert (tmp_path / "made.txt").read_text() == "made\n"
    assert "bucket executing touch made.txt" in run_logs(ok)

    failed = go(addon_execution(tmp_path, "fail"), "nope")
    assert failed.name == "Errored"
    assert "BucketExecution.execute returned False" in (failed.message or "")

    hung = go(addon_execution(tmp_path, "hang"), "stuck", timeout=1.0)
    assert hung.name == "TimedOut", hung.message

    # The addon's own schema: an unknown field is refused, naming it; nothing runs.
    bad = go(addon_execution(tmp_path, "touch never.txt", hostname="x"), "bad")
    assert bad.name == "Refused"
    assert "Additional properties are not allowed ('hostname' was unexpected)" in (
        bad.message or ""
    )
    assert not (tmp_path / "never.txt").exists()
