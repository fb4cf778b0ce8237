"""Bad numbers, names and text from the command line: exit 2, one line naming the field,
no flow run created, and Prefect's run listing keeps answering."""

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from typer.testing import CliRunner

from storeflow.cli.app import app

runner = CliRunner()


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
