"""`storeflow exposer ...`: bad input refused before any run, --json for scripts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from smbprotocol.exceptions import SMBException
from typer.testing import CliRunner

from storeflow.cli.exposers import exposer_app
from tests.exposers.conftest import Setup, digest
from tests.exposers.smbtools import SmbClient, read_file, write_file
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


def _cli(cifs: Setup, *argv: str) -> dict[str, Any]:
    result = runner.invoke(exposer_app, [*argv, "--config", cifs.name, "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output.strip().splitlines()[-1]))


def test_cli_allow_deny_and_update_change_who_gets_in(cifs: Setup, samba: SmbServer) -> None:
    """README's `exposer allow/deny/update` lines, proven with a real SMB client."""
    space = cifs.space("team")
    user = samba.username
    created = _cli(cifs, "create", "cifs", "team", "--space", "team", "--allow", "@nobody:ro")
    assert created["state"] == "Active"
    with (
        SmbClient(samba.host, samba.port, user, samba.password) as smb,
        pytest.raises(SMBException),
    ):
        smb.tree("team")  # not on the list yet

    assert _cli(cifs, "allow", "cifs", "team", user)["state"] == "Active"
    with SmbClient(samba.host, samba.port, user, samba.password) as smb:
        write_file(smb.tree("team"), "in.txt", b"allowed")
    assert (space / "in.txt").read_bytes() == b"allowed"

    assert _cli(cifs, "update", "cifs", "team", "--read-only")["state"] == "Active"
    with SmbClient(samba.host, samba.port, user, samba.password) as smb:
        tree = smb.tree("team")
        assert read_file(tree, "in.txt") == b"allowed"
        with pytest.raises(SMBException):
            write_file(tree, "no.txt", b"read-only")
    assert not (space / "no.txt").exists()

    assert _cli(cifs, "deny", "cifs", "team", user)["state"] == "Active"
    with (
        SmbClient(samba.host, samba.port, user, samba.password) as smb,
        pytest.raises(SMBException),
    ):
        smb.tree("team")
    shown = _cli(cifs, "show", "cifs", "team")
    assert shown["spec"]["access"] == [{"to": "@nobody", "level": "ro"}]
    assert shown["spec"]["read_only"] is True
