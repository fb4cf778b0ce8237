"""OTF config directories: `-t TASK_ID -c CONFIG_DIR`, variables (nested, from files,
from the environment), `.json.j2`, the `env` and `file` lookups, and a placeholder that
does not render (an error naming it; nothing runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from storeflow.cli.app import app
from storeflow.models.transfer import DefinitionError, parse_definition
from storeflow.tasks.otf.config import load_task, render_task_file

TEMPLATE = """{
  "type": "transfer",
  "source": {
    "directory": "{{ SRC }}",
    "fileRegex": "{{ PATTERN }}",
    "protocol": {"name": "local"}
  },
  "destination": [
    {"directory": "{{ DEST }}", "protocol": {"name": "local"}}
  ]
}"""


def config(tmp_path: Path, variables: dict[str, Any], task: str, name: str) -> Path:
    root = tmp_path / "cfg"
    (root / "transfers" / "nested").mkdir(parents=True)
    (root / "variables.json").write_text(json.dumps(variables))
    (root / "transfers" / "nested" / name).write_text(task)
    return root


def test_task_found_anywhere_rendered_with_nested_variables(tmp_path: Path) -> None:
    root = config(
        tmp_path,
        {"BASE": str(tmp_path), "SRC": "{{ BASE }}/in", "DEST": "{{ SRC }}/../out",
         "PATTERN": r".*\\.csv"},
        TEMPLATE,
        "nightly.json.j2",
    )  # fmt: skip
    data = load_task(root, "nightly", environ={})
    assert data["source"]["directory"] == f"{tmp_path}/in"
    assert data["destination"][0]["directory"] == f"{tmp_path}/in/../out"
    assert data["source"]["fileRegex"] == r".*\.csv"
    parse_definition(data)


def test_json_task_variables_and_environment_override(tmp_path: Path) -> None:
    task = json.loads(TEMPLATE)
    task["variables"] = {"DEST": "/from-task", "PATTERN": "x"}
    root = config(tmp_path, {"SRC": "/in", "DEST": "/from-globals", "N": 1}, json.dumps(task),
                  "t.json")  # fmt: skip
    data = load_task(root, "t", environ={})
    assert data["destination"][0]["directory"] == "/from-task"
    data = load_task(root, "t", environ={"SRC": "/from-env"})
    assert data["source"]["directory"] == "/from-env"
    (root / "variables.json.j2").write_text('{"SRC": "/first", "PATTERN": "y"}')
    data = load_task(root, "t", environ={})  # variables.json (read after .j2) wins
    assert data["source"]["directory"] == "/in"


def test_env_and_file_lookups(tmp_path: Path) -> None:
    secret = tmp_path / "dest.txt"
    secret.write_text("/from-file\nsecond line\n")
    task = TEMPLATE.replace("{{ SRC }}", "{{ lookup('env', name='SF_SRC') }}").replace(
        "{{ DEST }}", "{{ lookup('file', path=DEST_FILE) }}"
    )
    root = config(tmp_path, {"DEST_FILE": str(secret), "PATTERN": "p"}, task, "l.json.j2")
    data = load_task(root, "l", environ={"SF_SRC": "/from-env"})
    assert data["source"]["directory"] == "/from-env"
    assert data["destination"][0]["directory"] == "/from-file"
    with pytest.raises(DefinitionError, match="environment variable SF_SRC is not set"):
        load_task(root, "l", environ={})


def test_placeholder_that_does_not_render_is_named(tmp_path: Path) -> None:
    root = config(tmp_path, {"SRC": "/in", "PATTERN": "p"}, TEMPLATE, "t.json")
    with pytest.raises(DefinitionError, match="placeholder does not render: 'DEST' is undefined"):
        load_task(root, "t", environ={})
    with pytest.raises(DefinitionError, match=r"no missing\.json or missing\.json\.j2"):
        load_task(root, "missing", environ={})
    # A lone file is rendered too: its placeholder is never taken literally.
    with pytest.raises(DefinitionError, match="'SRC' is undefined"):
        render_task_file(root / "transfers" / "nested" / "t.json", environ={})


def test_cli_refuses_an_unrendered_placeholder_and_runs_nothing(tmp_path: Path) -> None:
    root = config(tmp_path, {"SRC": str(tmp_path), "PATTERN": ".*"}, TEMPLATE, "t.json")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(app, ["transfer", "run", "-t", "t", "-c", str(root)])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert "'DEST' is undefined" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no "{{ DEST }}" folder


def test_cli_runs_a_task_from_a_config_directory(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "a.csv").write_text("a")
    root = config(
        tmp_path,
        {"SRC": str(tmp_path / "in"), "DEST": str(tmp_path / "out"), "PATTERN": r".*\\.csv"},
        TEMPLATE,
        "daily.json.j2",
    )
    result = CliRunner().invoke(app, ["transfer", "run", "-t", "daily", "-c", str(root), "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.csv").read_text() == "a"
    assert json.loads(result.stdout.strip().splitlines()[-1])["flow_run_name"] == "transfer/daily"


def test_transfer_flow_takes_a_task_id_and_a_config_directory(tmp_path: Path) -> None:
    from storeflow.flows.transfers import transfer

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "b.csv").write_text("b")
    variables = {"SRC": str(tmp_path / "in"), "DEST": str(tmp_path / "out"), "PATTERN": ".*"}
    root = config(tmp_path, variables, TEMPLATE, "weekly.json.j2")
    state = transfer(name="weekly", config_dir=str(root), return_state=True)
    assert state.is_completed() and state.name == "Delivered", state.message
    assert (tmp_path / "out" / "b.csv").read_text() == "b"
    state = transfer(name="absent", config_dir=str(root), return_state=True)
    assert state.name == "Refused" and "no absent.json" in (state.message or "")
