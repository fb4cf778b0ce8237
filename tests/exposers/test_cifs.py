"""CIFS exposers against a real smbd, proven with an SMB client."""

from __future__ import annotations

import pytest
from smbprotocol.exceptions import SMBException

from storeflow.flows.exposers import (
    cifs_exposer_allow,
    cifs_exposer_create,
    cifs_exposer_delete,
    cifs_exposer_deny,
    cifs_exposer_update,
)
from storeflow.models.exposers import CifsAccessRule, CifsExposerSpec, CifsExposerUpdate
from storeflow.models.status import Status
from tests.exposers.conftest import Setup, digest
from tests.exposers.smbtools import SmbClient, read_file, write_file
from tests.services.smb import SmbServer


def client(samba: SmbServer) -> SmbClient:
    return SmbClient(samba.host, samba.port, samba.username, samba.password)


def test_share_lifecycle_over_smb(cifs: Setup, samba: SmbServer) -> None:
    space = cifs.space("projects")
    spec = CifsExposerSpec(
        name="projects",
        space="projects",
        comment="Project files",
        access=[CifsAccessRule(to=samba.username, level="rw")],
        hosts_allow=["127.0.0.1"],
        options={"create mask": "0660", "oplocks": False},
    )
    state = cifs.run(cifs_exposer_create, spec=spec)
    assert state.name == "Active", state.message
    row = cifs.read("cifs-exposer", "projects")
    assert row.parent_id == cifs.read("space", "projects").id
    assert "[projects]" in cifs.config.samba.include_path.read_text()

    # after create: a user writes and reads a file in the share
    with client(samba) as smb:
        tree = smb.tree("projects")
        write_file(tree, "hello.txt", b"hello over smb")
        assert read_file(tree, "hello.txt") == b"hello over smb"
    assert (space / "hello.txt").read_bytes() == b"hello over smb"

    # after update (read only): writes are refused, reads work
    state = cifs.run(
        cifs_exposer_update,
        name="projects",
        etag=cifs.read("cifs-exposer", "projects").etag,
        changes=CifsExposerUpdate(read_only=True),
    )
    assert state.name == "Active", state.message
    with client(samba) as smb:
        tree = smb.tree("projects")
        assert read_file(tree, "hello.txt") == b"hello over smb"
        with pytest.raises(SMBException):
            write_file(tree, "refused.txt", b"no")
    assert not (space / "refused.txt").exists()

    # after deny: that user is refused
    state = cifs.run(
        cifs_exposer_deny,
        name="projects",
        etag=cifs.read("cifs-exposer", "projects").etag,
        to=samba.username,
    )
    assert state.name == "Active", state.message
    with client(samba) as smb, pytest.raises(SMBException):
        smb.tree("projects")

    # allow again, then delete while a session has the share open
    state = cifs.run(
        cifs_exposer_allow,
        name="projects",
        etag=cifs.read("cifs-exposer", "projects").etag,
        rule=CifsAccessRule(to=samba.username, level="rw"),
    )
    assert state.name == "Active", state.message
    with client(samba) as smb:
        open_tree = smb.tree("projects")
        assert read_file(open_tree, "hello.txt") == b"hello over smb"
        state = cifs.run(
            cifs_exposer_delete, name="projects", etag=cifs.read("cifs-exposer", "projects").etag
        )
        assert state.name == "Deleted", state.message
        # the open session lost the share (close-share) ...
        with pytest.raises(SMBException):
            read_file(open_tree, "hello.txt")
    # ... and new sessions cannot find it
    with client(samba) as smb, pytest.raises(SMBException):
        smb.tree("projects")
    assert "[projects]" not in cifs.config.samba.include_path.read_text()
    assert (space / "hello.txt").exists()  # the data stays with the space


def test_failed_reload_restores_the_previous_config_byte_for_byte(
    cifs: Setup, samba: SmbServer
) -> None:
    cifs.space("alpha")
    state = cifs.run(cifs_exposer_create, spec=CifsExposerSpec(name="alpha", space="alpha"))
    assert state.name == "Active", state.message
    files = (cifs.config.samba.include_path, samba.conf)
    before = digest(*files)
    # smbd is gone: reload-config fails after the new file was written and checked
    samba.stop()
    cifs.space("beta")
    state = cifs.run(cifs_exposer_create, spec=CifsExposerSpec(name="beta", space="beta"))
    assert state.name == "Errored"
    assert "smbcontrol" in (state.message or "")
    assert digest(*files) == before
    assert cifs.read("cifs-exposer", "beta").status is Status.ERRORED
