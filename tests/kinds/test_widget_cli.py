"""A kind registered from outside storeflow (tests/kinds/widget.py) gets its CLI from
the registry record alone: create --spec, list, show, update --changes, delete, schema."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from storeflow.cli.app import main
from storeflow.tasks import kinds
from storeflow.tasks.kinds import ResourceKind
from tests.kinds.widget import WIDGET


@pytest.fixture
def widget(monkeypatch: pytest.MonkeyPatch) -> Iterator[ResourceKind]:
    # Registered for this test only: other tests (prefect.yaml against the registry)
    # must not see it.
    monkeypatch.setattr(kinds, "_registered", {})
    yield kinds.register(WIDGET)


def storeflow(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    code = exited.value.code
    return code if isinstance(code, int) else 1, captured.out, captured.err


def test_a_registered_kind_gets_every_verb(
    widget: ResourceKind,
    storeflow_home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = storeflow(capsys, "widget", "create", "--spec", '{"name": "w1"}', "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "Active"
    path = storeflow_home / "storage" / "widgets" / "w1"
    assert path.read_text() == "red"

    code, out, _ = storeflow(capsys, "widget", "list", "--json")
    assert code == 0 and [(w["name"], w["spec"]["colour"]) for w in json.loads(out)] == [
        ("w1", "red")
    ]
    code, out, _ = storeflow(capsys, "widget", "list")
    assert code == 0 and "colour" in out and "w1" in out and "red" in out

    changes = tmp_path / "changes.json"
    changes.write_text('{"colour": "blue"}')
    code, out, err = storeflow(capsys, "widget", "update", "w1", "--changes", f"@{changes}")
    assert code == 0, err
    assert path.read_text() == "blue"
    code, out, _ = storeflow(capsys, "widget", "show", "w1", "--json")
    assert json.loads(out)["spec"] == {"name": "w1", "colour": "blue"}

    code, out, _ = storeflow(capsys, "schema", "widget")
    assert code == 0 and set(json.loads(out)["properties"]) == {"name", "colour"}

    code, out, err = storeflow(capsys, "widget", "delete", "w1", "--json")
    assert code == 0, err
    assert json.loads(out)["state"] == "Deleted" and not path.exists()
    code, out, _ = storeflow(capsys, "widget", "list", "--json")
    assert json.loads(out) == []


def test_bad_specs_are_one_line_naming_the_field_and_change_nothing(
    widget: ResourceKind, storeflow_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spec, field in (
        ('{"name": "w2", "colour": "mauve"}', "widget.colour:"),
        ('{"name": "../w2"}', "widget.name:"),
        ('{"name": "w2", "size": 3}', "widget.size:"),
        ('["w2"]', "widget: expected a JSON object"),
        ("{name: w2}", "widget: not JSON"),
        ("@/nonexistent/spec.json", "widget: cannot read /nonexistent/spec.json"),
    ):
        code, out, err = storeflow(capsys, "widget", "create", "--spec", spec, "--json")
        assert code == 2 and out == "", (spec, out, err)
        assert err.startswith(f"error: {field}") and len(err.strip().splitlines()) == 1, err
    code, out, _ = storeflow(capsys, "widget", "list", "--json")
    assert json.loads(out) == []
    assert not (storeflow_home / "storage" / "widgets").exists()
