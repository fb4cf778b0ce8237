"""`storeflow exposer ...`: bad input refused before any run, --json for scripts."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from storeflow.cli.exposers import exposer_app
from tests.exposers.conftest import Setup, digest
from tests.services.smb import SmbServer

runner = CliRunner()


def test_cli_create_list_show_and_refusals(cifs: Setup, samba: SmbServer) -> None:
    cifs.space("docs")
    files = (cifs.config.samba.include_path, samba.conf)
    before, rows = digest(*files), cifs.rows()
    for argv, field in (
        (["create", "cifs", "x]\n[global]", "--space", "docs"], "cifs-exposer.name"),
        (["create", "cifs", "docs", "--space", "docs", "--option", "root preexec=id"], "options"),
        (["create", "cifs", "docs", "--space", "docs", "--allow", "%U"], "access.0.to"),
        (["create", "smb", "docs", "--space", "docs"], "protocol"),
    ):
        result = runner.invoke(exposer_app, [*argv, "--config", cifs.name, "--json"])
        assert result.exit_code == 2, result.output
        assert field in result.output
    assert digest(*files) == before and cifs.rows() == rows

    argv = ["create", "cifs", "docs", "--space", "docs", "--allow", "root:ro", "--json"]
    result = runner.invoke(exposer_app, [*argv, "--config", cifs.name])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["state"] == "Active"

    result = runner.invoke(exposer_app, ["list", "cifs", "--json", "--config", cifs.name])
    listed = json.loads(result.output.strip().splitlines()[-1])
    assert [r["name"] for r in listed] == ["docs"]
    result = runner.invoke(exposer_app, ["show", "cifs", "docs", "--json", "--config", cifs.name])
    shown = json.loads(result.output.strip().splitlines()[-1])
    assert shown["spec"]["access"] == [{"to": "root", "level": "ro"}]
