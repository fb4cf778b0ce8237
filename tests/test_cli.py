"""The storeflow CLI: verbs, --json, one-line errors and exit codes."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from storeflow.cli.app import app, command, main

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_space_create_list_show_update_delete_as_json(storeflow_home: Path) -> None:
    code, out, _ = invoke("space", "create", "cli-space", "--quota", "2G", "--json")
    assert code == 0, out
    created = json.loads(out)
    assert created["state"] == "Active" and created["result"]["spec"]["quota"] == 2 * 1024**3

    code, out, _ = invoke("space", "list", "--json")
    assert code == 0 and [s["name"] for s in json.loads(out)] == ["cli-space"]

    code, out, _ = invoke("space", "update", "cli-space", "--quota", "3G", "--json")
    assert code == 0 and json.loads(out)["result"]["spec"]["quota"] == 3 * 1024**3

    code, out, _ = invoke("space", "show", "cli-space", "--json")
    assert json.loads(out)["etag"] == 5

    code, out, _ = invoke("space", "delete", "cli-space", "--json")
    assert code == 0 and json.loads(out)["state"] == "Deleted"


def test_stale_etag_exits_one_with_the_reason(storeflow_home: Path) -> None:
    assert invoke("space", "create", "contested")[0] == 0
    code, _, err = invoke("space", "update", "contested", "--quota", "1G", "--etag", "1")
    assert code == 1
    assert "Refused" in err and "etag 1 given, now 3" in err


def test_bad_input_is_one_line_and_exit_two(storeflow_home: Path) -> None:
    code, out, err = invoke("space", "create", "../etc", "--json")
    assert code == 2 and out == ""
    assert err.strip().startswith("error: space.name:") and len(err.strip().splitlines()) == 1
    code, _, err = invoke("space", "create", "ok", "--quota", "lots")
    assert code == 2 and "space.quota:" in err
    code, _, err = invoke("space", "show", "missing")
    assert code == 2 and "space 'missing' does not exist" in err


def test_template_and_snapshot_verbs(storeflow_home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tpl"
    source.mkdir()
    (source / "README").write_text("hi")
    assert invoke("template", "create", "tpl", "--source", str(source))[0] == 0
    assert invoke("space", "create", "withtpl", "--template", "tpl")[0] == 0
    assert invoke("snapshot", "create", "withtpl", "snap1")[0] == 0
    code, out, _ = invoke("snapshot", "list", "withtpl", "--json")
    assert code == 0 and [s["name"] for s in json.loads(out)] == ["snap1"]
    assert invoke("snapshot", "delete", "withtpl", "snap1")[0] == 0
    code, out, _ = invoke("template", "list", "--json")
    assert json.loads(out)[0]["state"]["files"] == 1


def test_reconcile_json_reports_changes(storeflow_home: Path) -> None:
    (storeflow_home / "storage" / "spaces" / "found").mkdir(parents=True)
    code, out, _ = invoke("reconcile", "--json")
    assert code == 0
    assert {"kind": "space", "name": "found", "change": "adopted"}.items() <= json.loads(out)[
        "result"
    ][0].items()


def test_submit_without_a_server_is_a_clear_error(storeflow_home: Path) -> None:
    code, _, err = invoke("space", "create", "remote", "--submit")
    assert code == 2 and "PREFECT_API_URL" in err


def test_schema_prints_json_schema() -> None:
    code, out, _ = invoke("schema", "space")
    schema = json.loads(out)
    assert code == 0 and schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"name", "quota", "template"}


def test_main_runs_the_command_built_once(
    storeflow_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The warm runner's children call main(): the click command is built once per
    # process (Typer would rebuild it on every call) and exits with the verb's status.
    assert command() is command()
    with pytest.raises(SystemExit) as exited:
        main(["space", "create", "../etc", "--json"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: space.name:")
    with pytest.raises(SystemExit) as exited:
        main(["space", "create", "alpha", "--json"])
    assert exited.value.code == 0
    assert json.loads(capsys.readouterr().out)["state_type"] == "COMPLETED"
