"""`storeflow transfer run`: exit codes, one-line causes, --json, --callbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from storeflow.cli.app import app
from tests.flows_transfer.conftest import local_def, make_files

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["transfer", "run", *args])
    return result.exit_code, result.stdout, result.stderr


def write_definition(path: Path, definition: dict[str, object]) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(definition))
    else:
        path.write_text(yaml.safe_dump(definition))
    return path


def test_yaml_definition_delivers_and_exits_zero(storeflow_home: Path, tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"a.csv": b"1", "b.csv": b"22", "c.log": b"x"})
    dest = tmp_path / "dest"
    dest.mkdir()
    definition = local_def(src, dest, fileRegex=r".*\.csv")
    path = write_definition(tmp_path / "daily-csv.yaml", definition)

    code, out, err = invoke(str(path), "--json")

    assert code == 0, err
    answer = json.loads(out)
    assert answer["state"] == "Delivered"
    assert answer["flow_run_name"] == "transfer/daily-csv"
    assert answer["result"]["files"] == ["a.csv", "b.csv"]
    assert sorted(os.listdir(dest)) == ["a.csv", "b.csv"]


def test_callbacks_directory_filters_and_vetoes(storeflow_home: Path, tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"keep.txt": b"k", "drop.txt": b"d"})
    dest = tmp_path / "dest"
    dest.mkdir()
    hooks = tmp_path / "hooks"
    (hooks / "filter").mkdir(parents=True)
    (hooks / "filter" / "10-drop.js").write_text(
        "const utils = require('./utils')\n"
        "module.exports = function (req) {\n"
        "  return !utils.getNodeInfo(req).getPath().endsWith('drop.txt')\n}\n"
    )
    path = write_definition(tmp_path / "cb.json", local_def(src, dest))

    code, out, err = invoke(str(path), "--callbacks", str(hooks), "--json")
    assert code == 0, err
    assert json.loads(out)["result"]["skipped"] == ["drop.txt"]
    assert os.listdir(dest) == ["keep.txt"]

    (hooks / "before_task_executed").mkdir()
    (hooks / "before_task_executed" / "stop.py").write_text("def run(req):\n    return False\n")
    code, out, err = invoke(str(path), "--callbacks", str(hooks))
    assert code == 1
    line = err.strip()
    assert "\n" not in line
    assert line.startswith("Vetoed:") and "before_task_executed/stop.py vetoed" in line


def test_refused_run_exits_one_with_the_cause(storeflow_home: Path, tmp_path: Path) -> None:
    src = make_files(tmp_path / "src", {"a": b"a"})
    path = write_definition(tmp_path / "nowhere.json", local_def(src, tmp_path / "missing"))

    code, _, err = invoke(str(path))

    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("Refused: transfer/nowhere:")
    assert "does not exist (set createDirectoryIfNotExists to create it)" in err


def test_no_matching_file_is_an_error_naming_the_pattern(
    storeflow_home: Path, tmp_path: Path
) -> None:
    src = make_files(tmp_path / "src", {"a.txt": b"a"})
    dest = tmp_path / "dest"
    dest.mkdir()
    path = write_definition(tmp_path / "none.json", local_def(src, dest, fileRegex=r".*\.csv"))

    code, _, err = invoke(str(path))

    assert code == 1 and "no file in" in err and "matches" in err and "csv" in err


def test_invalid_definition_exits_two_naming_the_field(tmp_path: Path) -> None:
    definition = local_def(tmp_path, tmp_path / "d")
    definition["source"]["fileRgex"] = definition["source"].pop("fileRegex")
    path = write_definition(tmp_path / "typo.json", definition)

    code, _, err = invoke(str(path))

    assert code == 2
    assert err.count("\n") == 1
    assert "source.fileRgex: unknown field" in err and "source.fileRegex: Field required" in err


def test_missing_file_and_missing_callbacks_dir_exit_two(tmp_path: Path) -> None:
    code, _, err = invoke(str(tmp_path / "absent.yaml"))
    assert code == 2 and "absent.yaml" in err and "No such file" in err

    path = write_definition(tmp_path / "ok.json", local_def(tmp_path, tmp_path))
    code, _, err = invoke(str(path), "--callbacks", str(tmp_path / "nope"))
    assert code == 2 and "--callbacks" in err and "not a directory" in err


def test_submit_without_a_server_says_so(tmp_path: Path) -> None:
    path = write_definition(tmp_path / "ok.json", local_def(tmp_path, tmp_path / "d"))
    code, _, err = invoke(str(path), "--submit")
    assert code == 2 and "--submit needs a Prefect server" in err


def test_real_process_prints_one_line_and_exit_code(tmp_path: Path) -> None:
    """The installed `storeflow` script, as a script would call it (no Prefect run needed)."""
    storeflow = Path(sys.executable).parent / "storeflow"
    assert os.access(storeflow, os.X_OK), f"{storeflow} is not installed: run scripts/bootstrap.sh"
    path = tmp_path / "broken.yaml"
    path.write_text("type: transfer\nsource: [unclosed\n")
    done = subprocess.run(
        [str(storeflow), "transfer", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "broken.yaml" in done.stderr
