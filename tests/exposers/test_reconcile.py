"""Reconcile: a run killed between writing and reloading leaves a consistent, valid
configuration after reconcile; shares storeflow did not create follow MigrationMode."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import cast

from prefect.client.orchestration import get_client
from prefect.server.api.server import SubprocessASGIServer
from prefect.states import Crashed

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.exposers import cifs_exposer_create, cifs_exposer_update
from storeflow.flows.reconcile import reconcile
from storeflow.models.exposers import CifsExposerSpec, CifsExposerUpdate, MigrationMode
from storeflow.models.status import Status
from storeflow.tasks.reconcile import Change
from tests.exposers.conftest import Setup, digest, samba_config, save, start_samba
from tests.exposers.smbtools import SmbClient, read_file
from tests.services.smb import SmbServer, SmbShare

# Runs cifs-exposer-create and dies (SIGKILL) after the new file is written and checked,
# before smbd is told to reload it.
CHILD = """
import os, signal, sys
from storeflow.tasks.exposers.samba import SambaBackend
SambaBackend.activate = lambda self, removed: os.kill(os.getpid(), signal.SIGKILL)
from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.exposers import cifs_exposer_create
from storeflow.models.exposers import CifsExposerSpec
cifs_exposer_create(spec=CifsExposerSpec(name=sys.argv[1], space=sys.argv[1]), config=sys.argv[2])
"""


def api_url() -> str:
    servers = list(SubprocessASGIServer._instances.values())
    assert servers, "the test session's Prefect server is not running"
    return str(servers[0].api_url)


def assert_testparm_ok(setup: Setup) -> None:
    done = subprocess.run(
        [str(setup.config.samba.testparm), "-s", str(setup.config.samba.config_path)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_kill_between_write_and_reload_then_reconcile(cifs: Setup, samba: SmbServer) -> None:
    cifs.space("alpha")
    cifs.space("beta")
    assert (
        cifs.run(cifs_exposer_create, spec=CifsExposerSpec(name="alpha", space="alpha")).name
        == "Active"
    )
    include = cifs.config.samba.include_path
    applied = include.read_bytes()

    env = {**os.environ, "PREFECT_API_URL": api_url()}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "beta", cifs.name],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -9, child.stderr[-2000:]
    assert "[beta]" in include.read_text()  # written, never made live
    beta = cifs.read("cifs-exposer", "beta")
    assert beta.status is Status.INPROGRESS and beta.lock_owner

    state = reconcile(config=cifs.name, return_state=True)
    assert state.is_completed(), state.message
    assert include.read_bytes() == applied  # the half-made share is gone again
    assert_testparm_ok(cifs)
    with SmbClient(samba.host, samba.port, samba.username, samba.password) as smb:
        smb.tree("alpha")  # still served

    # Prefect learns the run crashed (as its zombie detection would say); reconcile frees it
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(beta.lock_owner), Crashed(), force=True)
    state = reconcile(config=cifs.name, return_state=True)
    assert state.is_completed(), state.message
    # ... and rolls the create back: no record, the name free for the next create
    assert state.message == "reconcile: 1 rolled back"
    assert ("cifs-exposer", "beta") not in {(row["kind"], row["name"]) for row in cifs.rows()}
    assert include.read_bytes() == applied
    state = cifs.run(cifs_exposer_create, spec=CifsExposerSpec(name="beta", space="beta"))
    assert state.name == "Active", state.message
    assert "[beta]" in include.read_text()
    assert_testparm_ok(cifs)


def test_unmanaged_shares_follow_the_migration_mode(tmp_path: Path, storeflow_home: Path) -> None:
    legacy = save(StoreflowConfig()).space("legacy")
    (legacy / "old.txt").write_text("from before storeflow\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shares = [
        SmbShare("legacy", legacy, {"comment": "old share", "valid users": "root"}),
        SmbShare("elsewhere", elsewhere),
    ]
    for server in start_samba(tmp_path / "smbd", shares):
        never = save(samba_config(server, MigrationMode.NEVER))
        auto = save(samba_config(server, MigrationMode.AUTO))
        changes = cast(list[Change], reconcile(config=never.name, return_state=True).result())
        found = {c.name for c in changes if c.change == "found"}
        assert found == {"legacy", "elsewhere"}
        row = never.read("cifs-exposer", "legacy")
        assert row.state["managed"] is False
        assert row.parent_id == never.read("space", "legacy").id

        # NEVER: left alone
        before = digest(server.conf, never.config.samba.include_path)
        state = never.run(
            cifs_exposer_update,
            name="legacy",
            etag=row.etag,
            changes=CifsExposerUpdate(read_only=True),
        )
        assert state.name == "Refused" and "never" in (state.message or "")
        assert digest(server.conf, never.config.samba.include_path) == before

        # AUTO: adopted when modified through storeflow
        state = auto.run(
            cifs_exposer_update,
            name="legacy",
            etag=row.etag,
            changes=CifsExposerUpdate(read_only=True),
        )
        assert state.name == "Active", state.message
        assert "[legacy]" not in server.conf.read_text()
        assert "[elsewhere]" in server.conf.read_text()  # the rest of the admin's file stays
        adopted = auto.read("cifs-exposer", "legacy")
        assert adopted.state["managed"] is True and adopted.spec["comment"] == "old share"
        assert adopted.spec["read_only"] is True
        assert_testparm_ok(auto)
        with SmbClient(server.host, server.port, server.username, server.password) as smb:
            assert read_file(smb.tree("legacy"), "old.txt") == b"from before storeflow\n"

        # a share outside every space cannot be adopted
        other = auto.read("cifs-exposer", "elsewhere")
        state = auto.run(
            cifs_exposer_update,
            name="elsewhere",
            etag=other.etag,
            changes=CifsExposerUpdate(read_only=True),
        )
        assert state.name == "Refused" and "not a storeflow space" in (state.message or "")
