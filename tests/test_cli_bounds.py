"""Bad numbers, names and text from the command line: exit 2, one line naming the field,
no flow run created, and Prefect's run listing keeps answering."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from storeflow.cli.app import app
from tests.e2e.server import free_port

runner = CliRunner()
STOREFLOW = str(Path(sys.executable).with_name("storeflow"))


def flow_run_count() -> int:
    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs(limit=200))


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def existing_space(storeflow_home: Path) -> str:
    code, out, err = invoke("space", "create", "bounded")
    assert code == 0, (out, err)
    return "bounded"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("space", "create", "q", "--quota=99999999999999999999999P"), "quota"),
        (("space", "create", "q", "--quota=9223372036854775808"), "quota"),
        (("space", "create", "q", "--quota=\u0663\u0663G"), "quota"),
        (("space", "update", "bounded", "--quota=99999999999999999999999P"), "quota"),
        (("space", "update", "bounded", "--quota=1G", "--etag=99999999999999999999999"), "etag"),
        (("space", "delete", "bounded", "--etag=0"), "etag"),
        (("space", "create", "a\nb"), "name"),
        (("space", "create", "../../pwned"), "name"),
        (("template", "create", "t", "--source=/tmp/a\x01b"), "source"),
    ],
)
def test_out_of_bounds_input_is_one_line_naming_the_field_and_no_run(
    existing_space: str, args: tuple[str, ...], field: str
) -> None:
    before = flow_run_count()
    code, out, err = invoke(*args)
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert field in lines[0], lines[0]
    assert flow_run_count() == before  # refused before any run existed
    code, out, _ = invoke("space", "list", "--json")
    assert code == 0 and '"bounded"' in out


def test_a_transfer_run_name_must_be_a_name(tmp_path: Path, storeflow_home: Path) -> None:
    definition = tmp_path / "t.json"
    definition.write_text(
        '{{"type": "transfer", "source": {{"protocol": {{"name": "local"}}, "directory": "{}",'
        ' "fileRegex": ".*"}}, "destination": [{{"protocol": {{"name": "local"}},'
        ' "directory": "{}"}}]}}'.format(tmp_path, tmp_path / "out")
    )
    before = flow_run_count()
    for name in ("../../pwned", "two\nlines"):
        code, out, err = invoke("transfer", "run", str(definition), "--name", name)
        assert code == 2, (out, err)
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
        assert "name" in err
    assert flow_run_count() == before


def test_an_infinite_callback_timeout_is_refused_in_the_contract(tmp_path: Path) -> None:
    callback = tmp_path / "cb.py"
    callback.write_text("def run(req):\n    return True\n")
    args = ["callback", "run", "--lang", "python", "--file", str(callback)]
    result = runner.invoke(app, [*args, "--path", str(callback), "--timeout", "1e309"])
    assert result.exit_code == 2
    answer = json.loads(result.stdout)
    assert answer["status"] == "error" and "--timeout" in answer["error"]


def test_an_unreachable_prefect_api_is_one_line_and_the_traceback_is_logged(
    tmp_path: Path, storeflow_home: Path
) -> None:
    closed = free_port()  # nothing listens there
    env = {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{closed}/api",
        "STOREFLOW_WARM": "off",
    }
    done = subprocess.run(
        [STOREFLOW, "space", "list", "--config", "saved-config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ConnectError" in lines[0], done.stderr
    assert "Traceback" in (storeflow_home / "storeflow.log").read_text()
