"""Providers and replicas through their flows: schedules, conflicts, syncs over SMB and NFS."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from storeflow.blocks.config import StoreflowConfig
from storeflow.blocks.remote import NFSRemote, SMBRemote
from storeflow.flows.providers import provider_create, provider_delete
from storeflow.flows.replicas import replica_create, replica_delete, replica_sync
from storeflow.flows.spaces import space_create, space_delete
from storeflow.models.replicas import ProviderSpec, ReplicaSpec, ScheduleSpec
from storeflow.models.schemas import SpaceSpec
from storeflow.tasks import schedules
from tests.flows_transfer.conftest import make_files, run
from tests.lifecycle.conftest import exists, read
from tests.services.fixtures import Served

ODD = {
    "with space.txt": b"s" * 10,
    "ünïcødé.txt": b"u" * 20,
    "-dash.txt": b"d" * 30,
    "$(id);`x`&.txt": b"m" * 40,
}


def make_space(config: StoreflowConfig, name: str) -> Path:
    state = run(space_create, spec=SpaceSpec(name=name))
    assert state.name == "Active", state.message
    return config.storage.spaces_dir / name


def local_provider(name: str, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    spec = ProviderSpec(name=name, protocol="local", directory=str(directory))
    state = run(provider_create, spec=spec)
    assert state.name == "Active", state.message


def replica(name: str, space: str, provider: str, direction: str, **extra: Any) -> ReplicaSpec:
    return ReplicaSpec.model_validate(
        {"name": name, "space": space, "provider": provider, "direction": direction, **extra}
    )


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_provider_must_answer_and_cannot_go_while_replicas_use_it(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    missing = ProviderSpec(name="ghost", protocol="local", directory=str(tmp_path / "nope"))
    refused = run(provider_create, spec=missing)
    assert refused.name == "Refused" and "does not exist" in (refused.message or "")
    assert not exists(config, "provider", "ghost")

    make_space(config, "docs")
    local_provider("archive", tmp_path / "archive")
    assert run(replica_create, spec=replica("docs-up", "docs", "archive", "upstream")).name == (
        "Active"
    )

    state = run(provider_delete, name="archive")
    assert state.name == "Refused" and "used by replicas (docs-up)" in (state.message or "")
    state = run(space_delete, name="docs", etag=read(config, "space", "docs").etag)
    assert state.name == "Refused" and "replicas (docs-up)" in (state.message or "")

    assert run(replica_delete, name="docs-up").name == "Deleted"
    assert run(provider_delete, name="archive").name == "Deleted"
    assert not exists(config, "provider", "archive")


def test_replica_schedule_is_created_and_removed(config: StoreflowConfig, tmp_path: Path) -> None:
    make_space(config, "projects")
    local_provider("site-b", tmp_path / "site-b")
    spec = replica("projects-up", "projects", "site-b", "upstream", schedule={"interval": 900})

    state = run(replica_create, spec=spec)

    assert state.name == "Active", state.message
    deployment = schedules.read("replica-sync/projects-up")
    assert deployment is not None
    assert deployment.parameters == {"name": "projects-up"}
    assert deployment.entrypoint == "flows/replicas.py:replica_sync"
    [schedule] = deployment.schedules
    assert schedule.active and schedule.schedule.interval.total_seconds() == 900  # type: ignore[union-attr]
    assert read(config, "replica", "projects-up").state["deployment"] == "replica-sync/projects-up"

    assert run(replica_delete, name="projects-up").name == "Deleted"
    assert schedules.read("replica-sync/projects-up") is None
    assert not exists(config, "replica", "projects-up")


def test_conflicting_replicas_are_refused(config: StoreflowConfig, tmp_path: Path) -> None:
    make_space(config, "shared")
    make_space(config, "other")
    local_provider("cloud", tmp_path / "cloud")
    assert run(replica_create, spec=replica("up-1", "shared", "cloud", "upstream")).name == "Active"

    same = run(replica_create, spec=replica("up-2", "shared", "cloud", "upstream"))
    assert same.name == "Refused"
    assert "replica 'up-1' already syncs space 'shared' upstream" in (same.message or "")
    both = run(replica_create, spec=replica("both-1", "shared", "cloud", "bidirectional"))
    assert both.name == "Refused" and "'up-1'" in (both.message or "")
    assert schedules.read("replica-sync/up-2") is None
    assert schedules.read("replica-sync/both-1") is None

    # The opposite direction of the same space, and any direction of another space, are fine.
    assert run(replica_create, spec=replica("down-1", "shared", "cloud", "downstream")).name == (
        "Active"
    )
    assert run(replica_create, spec=replica("other-b", "other", "cloud", "bidirectional")).name == (
        "Active"
    )
    # ...and a bidirectional one then blocks every direction of its space.
    late = run(replica_create, spec=replica("other-up", "other", "cloud", "upstream"))
    assert late.name == "Refused" and "bidirectional" in (late.message or "")

    for name in ("up-1", "down-1", "other-b"):
        assert run(replica_delete, name=name).name == "Deleted"


def test_no_prefect_server_is_said_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoEphemeral:
        class server:  # mirrors the settings tree
            class ephemeral:
                enabled = False

    monkeypatch.setattr(schedules, "get_current_settings", lambda: NoEphemeral)
    monkeypatch.setattr(schedules.PREFECT_API_URL, "value", lambda: None)
    with pytest.raises(schedules.NoPrefectServer, match="set PREFECT_API_URL"):
        schedules.require_server("replica 'x'")


@pytest.fixture
def smb_block(smb_service: Served) -> str:
    server = smb_service.server
    name = f"smb-{uuid.uuid4().hex[:8]}"
    SMBRemote(
        host=server.host,
        port=server.port,
        share=smb_service.name,
        username=server.username,  # type: ignore[union-attr]
        password=SecretStr(server.password),  # type: ignore[union-attr]
    ).save(name, overwrite=True)
    return name


@pytest.fixture
def nfs_block(nfs_service: Served) -> str:
    server = nfs_service.server
    name = f"nfs-{uuid.uuid4().hex[:8]}"
    NFSRemote(host=server.host, port=server.port, export=nfs_service.name).save(name)
    return name


def test_upstream_sync_to_smb_copies_the_tree_once(
    config: StoreflowConfig, smb_service: Served, smb_block: str
) -> None:
    root = f"up-{uuid.uuid4().hex[:6]}"
    (smb_service.data / root).mkdir()
    space = make_space(config, "lab")
    make_files(space, ODD)
    make_files(space / "raw" / "day 1", {"a.bin": os.urandom(3 << 20)})
    provider = ProviderSpec(name="smb-site", protocol="smb", directory=f"/{root}", block=smb_block)
    assert run(provider_create, spec=provider).name == "Active"
    assert run(replica_create, spec=replica("lab-up", "lab", "smb-site", "upstream")).name == (
        "Active"
    )

    first = run(replica_sync, name="lab-up")

    assert first.name == "Synced", first.message
    remote = smb_service.data / root / "lab"
    assert tree(remote) == tree(space)
    for name in ODD:
        assert (remote / name).stat().st_mtime == (space / name).stat().st_mtime
    assert len(first.result()["upstream"]["files"]) == 5

    (space / "with space.txt").write_bytes(b"changed")
    second = run(replica_sync, name="lab-up")
    assert second.result()["upstream"]["files"] == ["with space.txt"]
    assert (remote / "with space.txt").read_bytes() == b"changed"
    assert read(config, "replica", "lab-up").state["last"]["upstream"]["files"] == [
        "with space.txt"
    ]


def test_downstream_sync_from_nfs(
    config: StoreflowConfig, nfs_service: Served, nfs_block: str
) -> None:
    root = f"down-{uuid.uuid4().hex[:6]}"
    exported = make_files(nfs_service.data / root / "ingest", ODD)
    make_files(exported / "nested", {"deep.txt": b"deep"})
    space = make_space(config, "ingest")
    provider = ProviderSpec(name="nfs-site", protocol="nfs", directory=f"/{root}", block=nfs_block)
    assert run(provider_create, spec=provider).name == "Active"
    assert run(replica_create, spec=replica("in", "ingest", "nfs-site", "downstream")).name == (
        "Active"
    )

    state = run(replica_sync, name="in")

    assert state.name == "Synced", state.message
    assert tree(space) == tree(exported)
    assert sorted(os.listdir(exported)) == sorted([*ODD, "nested"])  # nothing deleted


def test_bidirectional_sync_newer_copy_wins(config: StoreflowConfig, tmp_path: Path) -> None:
    space = make_space(config, "twoway")
    far = tmp_path / "far"
    local_provider("far", far)
    make_files(space, {"mine.txt": b"mine", "both.txt": b"old here"})
    make_files(far / "twoway", {"theirs.txt": b"theirs"})
    (far / "twoway" / "both.txt").write_bytes(b"newer there")  # mtime now > 1.6e9
    assert run(replica_create, spec=replica("tw", "twoway", "far", "bidirectional")).name == (
        "Active"
    )

    state = run(replica_sync, name="tw")

    assert state.name == "Synced", state.message
    expected = {"mine.txt": b"mine", "theirs.txt": b"theirs", "both.txt": b"newer there"}
    assert tree(space) == expected
    assert tree(far / "twoway") == expected


def test_sync_of_an_unknown_replica_is_refused(config: StoreflowConfig, tmp_path: Path) -> None:
    assert run(replica_sync, name="nobody").name == "Refused"


def test_schedule_spec_needs_one_of_interval_or_cron() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ScheduleSpec(interval=3600, cron="0 2 * * *")
    with pytest.raises(ValueError):
        ScheduleSpec(interval=5)
    assert ScheduleSpec(cron="0 2 * * *").cron == "0 2 * * *"


def test_transfer_flow_to_smb_filters_and_records_metadata(
    config: StoreflowConfig, smb_service: Served, smb_block: str, tmp_path: Path
) -> None:
    """Through the flow to a real smbd: FILTER skips, metadata lives in the execution record
    (SMB has no user xattrs)."""
    from storeflow.flows.transfers import transfer
    from storeflow.sandbox.models import Stage
    from tests.flows_transfer.conftest import callback, last_execution

    root = f"flow-{uuid.uuid4().hex[:6]}"
    src = make_files(tmp_path / "src", {**ODD, "skip-me.tmp": b"no"})
    definition = {
        "type": "transfer",
        "source": {"directory": str(src), "fileRegex": ".*", "protocol": {"name": "local"}},
        "destination": [
            {
                "directory": f"/{root}/in",
                "createDirectoryIfNotExists": True,
                "protocol": {"name": "smb", "block": smb_block},
            }
        ],
    }
    skip = "def run(req):\n    return not req.node_info.path.endswith('.tmp')\n"
    tag = (
        "import utils\ndef run(req):\n"
        "    utils.get_node_info(req).metadata['checked'] = 'yes'\n    return True\n"
    )
    state = run(
        transfer,
        definition=definition,
        name="to-smb",
        callbacks=[
            callback(Stage.FILTER, skip),
            callback(Stage.AFTER_RESULT_RECEIVED, tag),
        ],
    )

    assert state.name == "Delivered", state.message
    assert tree(smb_service.data / root / "in") == ODD
    execution = last_execution(config, "to-smb")
    assert execution.skipped == 1
    assert {Path(p).name for p in execution.file_metadata} == set(ODD)
    assert all(m == {"checked": "yes"} for m in execution.file_metadata.values())
