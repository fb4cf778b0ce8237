"""Bad input never reaches a configuration file: each is refused, naming the field and the
reason, and the config files and the database stay byte-identical."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from storeflow.flows.exposers import cifs_exposer_create, cifs_exposer_update, nfs_exposer_create
from storeflow.models.errors import InvalidInput
from storeflow.models.exposers import (
    CifsExposerSpec,
    CifsExposerUpdate,
    NfsClientRule,
    NfsExposerSpec,
)
from storeflow.models.schemas import parse_spec
from tests.exposers.conftest import Setup, digest, nfs_config, save
from tests.services.smb import SmbServer

LONG = "a" * 300
CIFS_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("bracket in name", {"name": "data]"}, "cifs-exposer.name"),
    ("section in name", {"name": "x]\n[global"}, "cifs-exposer.name"),
    ("newline in name", {"name": "data\nread only = no"}, "cifs-exposer.name"),
    ("reserved global", {"name": "global"}, "cifs-exposer.name"),
    ("reserved GLOBAL", {"name": "GLOBAL"}, "cifs-exposer.name"),
    ("reserved Homes", {"name": "Homes"}, "cifs-exposer.name"),
    ("reserved printers", {"name": "printers"}, "cifs-exposer.name"),
    ("reserved IPC$", {"name": "IPC$"}, "cifs-exposer.name"),
    ("reserved print$", {"name": "print$"}, "cifs-exposer.name"),
    ("substitution in name", {"name": "%U"}, "cifs-exposer.name"),
    ("cyrillic look-alike", {"name": "pr\u043ejects"}, "cifs-exposer.name"),
    ("fullwidth look-alike", {"name": "\uff47lobal"}, "cifs-exposer.name"),
    ("very long name", {"name": LONG}, "cifs-exposer.name"),
    ("space outside the root", {"space": "../etc"}, "cifs-exposer.space"),
    ("absolute space", {"space": "/etc"}, "cifs-exposer.space"),
    ("comment with section", {"comment": "x\n[global]\nroot preexec = id"}, "cifs-exposer.comment"),
    ("comment with ;", {"comment": "a; b"}, "cifs-exposer.comment"),
    ("comment with #", {"comment": "a # b"}, "cifs-exposer.comment"),
    ("comment with %U", {"comment": "home of %U"}, "cifs-exposer.comment"),
    ("comment with ]", {"comment": "a ] b"}, "cifs-exposer.comment"),
    ("very long comment", {"comment": LONG}, "cifs-exposer.comment"),
    ("user with bracket", {"access": [{"to": "alice]"}]}, "cifs-exposer.access.0.to"),
    ("user with newline", {"access": [{"to": "alice\n[x]"}]}, "cifs-exposer.access.0.to"),
    ("user %U", {"access": [{"to": "%U"}]}, "cifs-exposer.access.0.to"),
    ("duplicate user", {"access": [{"to": "bob"}, {"to": "BOB"}]}, "cifs-exposer.access"),
    ("denied with ;", {"denied": ["bob;x"]}, "cifs-exposer.denied.0"),
    ("host with ;", {"hosts_allow": ["127.0.0.1;x"]}, "cifs-exposer.hosts_allow.0"),
    ("host ALL", {"hosts_allow": ["ALL EXCEPT 10.0.0.1"]}, "cifs-exposer.hosts_allow.0"),
    ("host *", {"hosts_allow": ["*"]}, "cifs-exposer.hosts_allow"),
    ("option path", {"options": {"path": "/etc"}}, "cifs-exposer.options"),
    ("option root preexec", {"options": {"root preexec": "id"}}, "cifs-exposer.options"),
    ("option include", {"options": {"include": "/etc/x"}}, "cifs-exposer.options"),
    ("option vfs objects", {"options": {"vfs objects": "x"}}, "cifs-exposer.options"),
    ("option bad mode", {"options": {"create mask": "0660\n[x]"}}, "cifs-exposer.options"),
    ("option bad bool", {"options": {"oplocks": "maybe"}}, "cifs-exposer.options"),
    ("option force user %U", {"options": {"force user": "%U"}}, "cifs-exposer.options"),
    ("option key newline", {"options": {"oplocks\n[x]": True}}, "cifs-exposer.options"),
    ("option enum", {"options": {"smb encrypt": "whatever"}}, "cifs-exposer.options"),
    ("unknown field", {"path": "/etc"}, "cifs-exposer.path"),
]

NFS_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("client with options", {"clients": [{"client": "10.0.0.1(rw,no_root_squash)"}]}, "client"),
    ("client with newline", {"clients": [{"client": "10.0.0.1\n/ *(rw)"}]}, "client"),
    ("client with space", {"clients": [{"client": "10.0.0.1 *"}]}, "client"),
    ("client look-alike", {"clients": [{"client": "h\u043est.example"}]}, "client"),
    ("bad network", {"clients": [{"client": "10.0.0.1/8"}]}, "client"),
    ("bad squash", {"clients": [{"client": "10.0.0.1", "squash": "no_squash"}]}, "squash"),
    ("bad access", {"clients": [{"client": "10.0.0.1", "access": "all"}]}, "access"),
    ("duplicate client", {"clients": [{"client": "10.0.0.1"}, {"client": "10.0.0.1"}]}, "clients"),
    ("pseudo escapes", {"pseudo": "/a/../b"}, "nfs-exposer.pseudo"),
    ("pseudo with brace", {"pseudo": "/a}"}, "nfs-exposer.pseudo"),
    ("name with quote", {"name": 'x" ; y'}, "nfs-exposer.name"),
    ("very long name", {"name": LONG}, "nfs-exposer.name"),
]


@pytest.mark.parametrize(("case", "change", "field"), CIFS_BAD, ids=[c[0] for c in CIFS_BAD])
def test_cifs_spec_refuses(case: str, change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_spec(CifsExposerSpec, {"name": "data", "space": "data", **change}, "cifs-exposer")
    assert refused.value.field.startswith(field), (case, str(refused.value))
    assert refused.value.reason


@pytest.mark.parametrize(("case", "change", "field"), NFS_BAD, ids=[c[0] for c in NFS_BAD])
def test_nfs_spec_refuses(case: str, change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_spec(NfsExposerSpec, {"name": "data", "space": "data", **change}, "nfs-exposer")
    assert field in refused.value.field, (case, str(refused.value))


def test_option_names_are_matched_like_samba_does() -> None:
    spec = parse_spec(
        CifsExposerSpec,
        {"name": "d", "space": "d", "options": {"Create_Mask": "660", "OPLOCKS": "no"}},
        "cifs-exposer",
    )
    assert spec.options == {"create mask": "0660", "oplocks": False}


def test_refusals_that_need_the_configuration_leave_everything_untouched(
    cifs: Setup, samba: SmbServer, tmp_path: Path
) -> None:
    cifs.space("projects")
    state = cifs.run(cifs_exposer_create, spec=CifsExposerSpec(name="projects", space="projects"))
    assert state.name == "Active", state.message
    files = (cifs.config.samba.include_path, samba.conf)
    before, rows = digest(*files), cifs.rows()

    # duplicates, case-insensitively (smbd's rule), and a missing space
    refused = [
        CifsExposerSpec(name="PROJECTS", space="projects"),
        CifsExposerSpec(name="other", space="missing"),
        CifsExposerSpec(name="guest", space="projects", guest_ok=True),  # block forbids
    ]
    for spec in refused:
        state = cifs.run(cifs_exposer_create, spec=spec)
        assert state.name == "Refused", (spec, state.message)
        assert digest(*files) == before and cifs.rows() == rows

    # an update refused by the block's policy changes nothing either
    state = cifs.run(
        cifs_exposer_update,
        name="projects",
        etag=cifs.read("cifs-exposer", "projects").etag,
        changes=CifsExposerUpdate(guest_ok=True),
    )
    assert state.name == "Refused" and "guest" in (state.message or "")
    assert digest(*files) == before and cifs.rows() == rows

    # a space whose directory became a symlink out of the storage root
    outside = tmp_path / "outside"
    outside.mkdir()
    cifs.space("escape")
    rows = cifs.rows()
    escape = cifs.config.storage.spaces_dir / "escape"
    escape.rmdir()
    escape.symlink_to(outside)
    state = cifs.run(cifs_exposer_create, spec=CifsExposerSpec(name="escape", space="escape"))
    assert state.name == "Refused" and "symbolic link" in (state.message or "")
    assert digest(*files) == before and cifs.rows() == rows


def test_nfs_policy_refuses_everyone_and_no_root_squash(tmp_path: Path) -> None:
    exports = tmp_path / "exports.d"
    exports.mkdir()
    setup = save(nfs_config(exports_path=exports / "storeflow.exports", main_exports=[]))
    setup.space("data")
    files = (exports / "storeflow.exports",)
    before, rows = digest(*files), setup.rows()
    for rule, field in (
        (NfsClientRule(client="*"), "client"),
        (NfsClientRule(client="10.0.0.0/8", squash="no_root_squash"), "squash"),
    ):
        spec = NfsExposerSpec(name="data", space="data", clients=[rule])
        state = setup.run(nfs_exposer_create, spec=spec)
        assert state.name == "Refused", state.message
        assert f"nfs-exposer.clients.0.{field}" in (state.message or "")
        assert digest(*files) == before and setup.rows() == rows


def _names_field(message: str | None, field: str) -> bool:
    """pydantic puts the field in the location ("spec.name: ...") or, for checks of the
    whole spec, at the head of the reason ("spec: Value error, access[0].to: ...")."""
    text = re.sub(r"\[(\d+)\]", r".\1", str(message))  # access[0] -> access.0
    tail = re.escape(field)
    return re.search(rf"- spec(\.([\w.]+\.)?{tail}\b|: .*\b{tail}\b)", text) is not None


def test_every_cifs_refusal_holds_through_the_flow(cifs: Setup, samba: SmbServer) -> None:
    """Each bad input above, passed to the flow the way the UI and the REST API pass it (a
    plain dict): the run fails naming the field, config files and database untouched."""
    cifs.space("data")
    files = (cifs.config.samba.include_path, samba.conf)
    before, rows = digest(*files), cifs.rows()
    for case, change, field in CIFS_BAD:
        state = cifs.run(cifs_exposer_create, spec={"name": "data", "space": "data", **change})
        assert state.is_failed(), (case, state)
        assert _names_field(state.message, field.removeprefix("cifs-exposer.")), (case, state)
        assert digest(*files) == before and cifs.rows() == rows, case


def test_every_nfs_refusal_holds_through_the_flow(tmp_path: Path) -> None:
    exports = tmp_path / "exports.d"
    exports.mkdir()
    setup = save(nfs_config(exports_path=exports / "storeflow.exports", main_exports=[]))
    setup.space("data")
    files = (exports / "storeflow.exports",)
    before, rows = digest(*files), setup.rows()
    for case, change, field in NFS_BAD:
        state = setup.run(nfs_exposer_create, spec={"name": "data", "space": "data", **change})
        assert state.is_failed(), (case, state)
        assert _names_field(state.message, field.removeprefix("nfs-exposer.")), (case, state)
        assert digest(*files) == before and setup.rows() == rows, case
    assert sorted(os.listdir(exports)) == []
