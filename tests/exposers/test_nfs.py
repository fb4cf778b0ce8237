"""NFS exposers: exportfs -ra (real, in a private mount namespace) accepts every file
storeflow writes; with nfs-ganesha on 127.0.0.1, the export is listed over NFS and gone
after delete."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storeflow.blocks.nfs import NfsBackend
from storeflow.flows.exposers import (
    nfs_exposer_allow,
    nfs_exposer_create,
    nfs_exposer_delete,
    nfs_exposer_deny,
    nfs_exposer_update,
)
from storeflow.models.exposers import NfsClientRule, NfsExposerSpec, NfsExposerUpdate
from storeflow.models.status import Status
from tests.exposers.conftest import Setup, digest, nfs_config, save
from tests.services.exportfs import PrivateExportfs, private_exportfs
from tests.services.nfs import NfsServer, nfs_server
from tests.services.process import require_binary


@pytest.fixture
def exportfs(tmp_path: Path) -> PrivateExportfs:
    return private_exportfs(tmp_path / "exportfs")


@pytest.fixture
def kernel(exportfs: PrivateExportfs, storeflow_home: Path) -> Setup:
    return save(
        nfs_config(
            exports_path=exportfs.exports_d / "storeflow.exports",
            main_exports=[exportfs.etc_exports],
            exportfs=exportfs.wrapper,
        )
    )


def etag(setup: Setup, name: str) -> int:
    return setup.read("nfs-exposer", name).etag


def test_exportfs_accepts_every_file_storeflow_writes(
    kernel: Setup, exportfs: PrivateExportfs
) -> None:
    space = kernel.space("data")
    spec = NfsExposerSpec(
        name="data",
        space="data",
        clients=[
            NfsClientRule(client="127.0.0.1", access="rw"),
            NfsClientRule(client="10.1.0.0/16", sync=False, anonuid=1000, anongid=1000),
        ],
    )
    assert kernel.run(nfs_exposer_create, spec=spec).name == "Active"
    etab = exportfs.exported()
    assert f"{space}\t127.0.0.1(rw,sync," in etab and "10.1.0.0/16(ro,async," in etab

    steps: list[tuple[Any, dict[str, Any]]] = [
        (nfs_exposer_allow, {"rule": NfsClientRule(client="host-a.example", access="rw")}),
        (nfs_exposer_deny, {"client": "10.1.0.0/16"}),
        (nfs_exposer_update, {"changes": NfsExposerUpdate(rename="data2")}),
    ]
    name = "data"
    for flow, params in steps:
        state = kernel.run(flow, name=name, etag=etag(kernel, name), **params)
        assert state.name == "Active", state.message
        name = "data2" if flow is nfs_exposer_update else name
    assert "10.1.0.0/16" not in exportfs.exported()
    assert "host-a.example(rw," in kernel.config.nfs.exports_path.read_text()
    # no clients left: nothing exported (a bare path would mean "everyone")
    for client in ("127.0.0.1", "host-a.example"):
        state = kernel.run(nfs_exposer_deny, name=name, etag=etag(kernel, name), client=client)
        assert state.name == "Active", state.message
    assert str(space) not in exportfs.exported()
    assert kernel.run(nfs_exposer_delete, name=name, etag=etag(kernel, name)).name == "Deleted"
    assert "storeflow-exposer:" not in kernel.config.nfs.exports_path.read_text()


def test_exportfs_refusal_restores_the_exports_file(
    kernel: Setup, exportfs: PrivateExportfs
) -> None:
    kernel.space("data")
    ok = NfsExposerSpec(name="data", space="data", clients=[NfsClientRule(client="127.0.0.1")])
    assert kernel.run(nfs_exposer_create, spec=ok).name == "Active"
    before = digest(kernel.config.nfs.exports_path)
    # the admin's file breaks: exportfs -ra now fails, whatever storeflow writes
    exportfs.etc_exports.write_text("/nonexistent 127.0.0.1(rw,bogus)\n")
    kernel.space("more")
    more = NfsExposerSpec(name="more", space="more", clients=[NfsClientRule(client="127.0.0.1")])
    state = kernel.run(nfs_exposer_create, spec=more)
    assert state.name == "Errored" and "exportfs" in (state.message or "")
    assert digest(kernel.config.nfs.exports_path) == before
    assert kernel.read("nfs-exposer", "more").status is Status.ERRORED


# -- nfs-ganesha ------------------------------------------------------------------------------


@pytest.fixture
def ganesha(tmp_path: Path) -> Iterator[NfsServer]:
    root = tmp_path / "ganesha"
    root.mkdir()
    managed = root / "storeflow-exports.conf"
    managed.write_text("")
    with nfs_server(root, [], includes=[managed]) as server:
        yield server


def nfs_ls(server: NfsServer, pseudo: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("nfs-ls", "libnfs-utils"), server.url(pseudo)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


def wait_for(check: object, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout}s")


def test_ganesha_serves_the_space_and_forgets_it_after_delete(
    ganesha: NfsServer, storeflow_home: Path
) -> None:
    setup = save(
        nfs_config(
            backend=NfsBackend.GANESHA,
            ganesha_config=ganesha.conf,
            ganesha_exports_path=ganesha.root / "storeflow-exports.conf",
            ganesha_pidfile=ganesha.pidfile,
            port=ganesha.port,
        )
    )
    space = setup.space("alpha")
    (space / "report.txt").write_text("over nfs\n")
    spec = NfsExposerSpec(
        name="alpha", space="alpha", clients=[NfsClientRule(client="127.0.0.1", access="rw")]
    )
    state = setup.run(nfs_exposer_create, spec=spec)
    assert state.name == "Active", state.message
    assert setup.read("nfs-exposer", "alpha").state["export_id"] == 100
    wait_for(lambda: "report.txt" in nfs_ls(ganesha, "/alpha").stdout)

    # an access-rule change keeps the Export_Id (clients' file handles carry it)
    state = setup.run(
        nfs_exposer_allow,
        name="alpha",
        etag=etag(setup, "alpha"),
        rule=NfsClientRule(client="10.0.0.0/8"),
    )
    assert state.name == "Active", state.message
    assert setup.read("nfs-exposer", "alpha").state["export_id"] == 100
    wait_for(lambda: "report.txt" in nfs_ls(ganesha, "/alpha").stdout)

    state = setup.run(nfs_exposer_delete, name="alpha", etag=etag(setup, "alpha"))
    assert state.name == "Deleted", state.message
    wait_for(lambda: nfs_ls(ganesha, "/alpha").returncode != 0)
    assert ganesha.daemon is not None and ganesha.daemon.proc.poll() is None  # still serving


def test_ganesha_config_that_fails_the_check_restores_the_exports_and_keeps_serving(
    ganesha: NfsServer, storeflow_home: Path
) -> None:
    """ganesha has no config check and drops every export on a bad SIGHUP: storeflow's
    own parser refuses first, restores its exports file byte for byte, and never signals."""
    exports = ganesha.root / "storeflow-exports.conf"
    setup = save(
        nfs_config(
            backend=NfsBackend.GANESHA,
            ganesha_config=ganesha.conf,
            ganesha_exports_path=exports,
            ganesha_pidfile=ganesha.pidfile,
            port=ganesha.port,
        )
    )
    space = setup.space("alpha")
    (space / "report.txt").write_text("over nfs\n")
    rule = NfsClientRule(client="127.0.0.1", access="rw")
    state = setup.run(
        nfs_exposer_create, spec=NfsExposerSpec(name="alpha", space="alpha", clients=[rule])
    )
    assert state.name == "Active", state.message
    wait_for(lambda: "report.txt" in nfs_ls(ganesha, "/alpha").stdout)

    setup.space("beta")
    good_main = ganesha.conf.read_text()
    # An admin's own export reuses alpha's Export_Id: only the whole configuration,
    # storeflow's file included, shows the clash, once storeflow has written its file.
    ganesha.conf.write_text(
        good_main + f"\nEXPORT {{ Export_Id = 100; Path = {ganesha.root}; Pseudo = /admin;"
        " FSAL { Name = VFS; } }\n"
    )
    files = (exports, ganesha.conf)
    before = digest(*files)
    state = setup.run(
        nfs_exposer_create, spec=NfsExposerSpec(name="beta", space="beta", clients=[rule])
    )
    assert state.is_failed(), state
    assert "ganesha configuration" in str(state.message), state.message
    assert digest(*files) == before
    assert state.name == "Errored"
    beta = setup.read("nfs-exposer", "beta")
    assert beta.status is Status.ERRORED
    assert (
        beta.status_message == "create failed: ganesha configuration: export_id=100 is used twice"
    )
    assert ganesha.daemon is not None and ganesha.daemon.proc.poll() is None
    assert "report.txt" in nfs_ls(ganesha, "/alpha").stdout  # alpha still served
