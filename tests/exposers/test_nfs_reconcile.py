"""Reconcile with kernel NFS (real exportfs in a private mount namespace): exports in the
admin's /etc/exports are found as unmanaged exposers, follow MigrationMode when changed
through storeflow, and are forgotten when the admin removes them."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from storeflow.flows.exposers import nfs_exposer_allow
from storeflow.flows.reconcile import reconcile
from storeflow.models.config import MigrationMode
from storeflow.models.exposers import NfsClientRule
from storeflow.tasks.reconcile import Change
from tests.exposers.conftest import Setup, digest, nfs_config, save
from tests.services.exportfs import PrivateExportfs, private_exportfs


@pytest.fixture
def exportfs(tmp_path: Path) -> PrivateExportfs:
    return private_exportfs(tmp_path / "exportfs")


def kernel(exportfs: PrivateExportfs, mode: MigrationMode) -> Setup:
    return save(
        nfs_config(
            exports_path=exportfs.exports_d / "storeflow.exports",
            main_exports=[exportfs.etc_exports],
            exportfs=exportfs.wrapper,
            migration_mode=mode,
        )
    )


def changes_of(setup: Setup) -> dict[str, str]:
    state = reconcile(config=setup.name, return_state=True)
    assert state.is_completed(), state.message
    return {c.name: c.change for c in cast(list[Change], state.result()) if c.kind == "nfs-exposer"}


def test_the_admins_exports_follow_the_migration_mode(
    exportfs: PrivateExportfs, tmp_path: Path, storeflow_home: Path
) -> None:
    never = kernel(exportfs, MigrationMode.NEVER)
    legacy = never.space("legacy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    exportfs.etc_exports.write_text(
        f"{legacy} 127.0.0.1(ro,sync,root_squash)\n{elsewhere} 10.9.0.0/16(rw)\n"
    )
    exportfs.run("-ra")
    assert f"{legacy}\t127.0.0.1(ro," in exportfs.exported()

    assert changes_of(never) == {"legacy": "found", "elsewhere": "found"}
    row = never.read("nfs-exposer", "legacy")
    assert row.state["managed"] is False and row.parent_id == never.read("space", "legacy").id
    assert changes_of(never) == {}  # found once, not again

    # NEVER: a change through storeflow is refused and touches no file
    files = digest(exportfs.etc_exports, never.config.nfs.exports_path)
    rule = NfsClientRule(client="127.0.0.2", access="rw")
    state = never.run(nfs_exposer_allow, name="legacy", etag=row.etag, rule=rule)
    assert state.name == "Refused" and "'never'" in (state.message or "")
    assert digest(exportfs.etc_exports, never.config.nfs.exports_path) == files

    # AUTO: the change adopts it: out of the admin's file, into storeflow's, made live
    auto = kernel(exportfs, MigrationMode.AUTO)
    state = auto.run(nfs_exposer_allow, name="legacy", etag=row.etag, rule=rule)
    assert state.name == "Active", state.message
    assert str(legacy) not in exportfs.etc_exports.read_text()
    assert str(elsewhere) in exportfs.etc_exports.read_text()  # the rest of the file stays
    adopted = auto.read("nfs-exposer", "legacy")
    assert adopted.state["managed"] is True
    clients = {c["client"]: c["access"] for c in adopted.spec["clients"]}
    assert clients == {"127.0.0.1": "ro", "127.0.0.2": "rw"}
    exported = exportfs.exported()
    assert f"{legacy}\t127.0.0.1(ro," in exported and "127.0.0.2(rw," in exported

    # an export outside every space cannot be adopted
    other = auto.read("nfs-exposer", "elsewhere")
    state = auto.run(nfs_exposer_allow, name="elsewhere", etag=other.etag, rule=rule)
    assert state.name == "Refused" and "not a storeflow space" in (state.message or "")

    # the admin removes it: reconcile forgets it; the adopted one stays storeflow's
    exportfs.etc_exports.write_text("")
    assert changes_of(auto) == {"elsewhere": "forgotten"}
    assert [r["name"] for r in auto.rows() if r["kind"] == "nfs-exposer"] == ["legacy"]
