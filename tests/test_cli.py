"""The storeflow CLI: verbs, --json, one-line errors and exit codes."""

import json
import os
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from storeflow.cli.app import LAZY, StoreflowGroup, app, command, main
from storeflow.tasks import kinds
from tests.e2e.server import run_command

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


def test_schema_of_every_kind_and_a_clear_error_for_others() -> None:
    for kind in kinds.all_kinds():
        code, out, _ = invoke("schema", kind.name)
        assert code == 0 and json.loads(out) == kind.spec_model.model_json_schema(), kind.name
    code, out, _ = invoke("schema", "cifs-exposer")
    assert {"name", "space", "access"} <= set(json.loads(out)["properties"])
    code, out, err = invoke("schema", "gadget")
    assert code == 2 and out == "" and err.startswith("error: kind: 'gadget' is not one of")


# `storeflow ARGS` as the console script runs it, writing at exit every module loaded
# (sys.modules: -X importtime would miss those importlib.import_module loads).
COLD_RUN = """
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["MODULES_OUT"], "w").write(json.dumps(list(sys.modules))))
sys.argv = ["storeflow", *json.loads(os.environ["ARGS"])]
from storeflow.cli.main import main
main()
"""


def imported_modules(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, set[str]]:
    """The exit status of `storeflow ARGS` run cold, and every module it imported."""
    out = cwd / "modules.json"
    env = {**env, "MODULES_OUT": str(out), "ARGS": json.dumps(args)}
    result = run_command([sys.executable, "-c", COLD_RUN], env, cwd, timeout=120)
    return result.returncode, set(json.loads(out.read_text()))


def test_reading_imports_neither_prefect_nor_a_flow(storeflow_home: Path, tmp_path: Path) -> None:
    env = {**os.environ, "STOREFLOW_WARM": "off"}
    callback = tmp_path / "cb.py"
    callback.write_text("def run(req):\n    return True\n")
    run = ["callback", "run", "--lang", "python", "--file", str(callback), "--path", str(callback)]
    for args, status in (
        (["--help"], 0),
        (["space", "list", "--json"], 0),
        (["snapshot", "list", "--json"], 0),
        (["space", "show", "missing", "--json"], 2),
        (["schema", "nfs-exposer"], 0),
        (run, 0),
    ):
        code, modules = imported_modules(args, env, tmp_path)
        assert code == status, args
        assert "typer" in modules, args  # the import trace is there to read
        heavy = sorted(m for m in modules if m.split(".")[0] == "prefect" or ".flows." in m)
        assert heavy == [], (args, heavy[:5])
    # A verb that runs a flow does import it (and Prefect).
    code, modules = imported_modules(["space", "create", "cold"], env, tmp_path)
    assert code == 0 and {"prefect", "storeflow.flows.spaces"} <= modules
    # Once the SQLite database exists and is current, reading it needs no SQLAlchemy
    # (models/quickread.py), nor the models of other kinds.
    for args in (["space", "list", "--json"], ["space", "show", "cold", "--json"]):
        code, modules = imported_modules(args, env, tmp_path)
        assert code == 0, args
        assert not {"sqlalchemy", "storeflow.models.exposers", "rich.table"} & modules, args


def test_lazy_groups_list_their_own_help() -> None:
    built = command()
    assert isinstance(built, StoreflowGroup)
    for name, (path, help) in LAZY.items():
        module, _, attribute = path.partition(":")
        sub_app = getattr(__import__(module, fromlist=[attribute]), attribute)
        assert typer.main.get_group(sub_app).help == help, name
    code, out, _ = invoke("--help")
    assert code == 0 and all(name in out for name in LAZY)


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
