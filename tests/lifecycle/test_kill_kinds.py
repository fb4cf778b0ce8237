"""kill -9 mid-perform for the kinds test_kill.py does not cover: snapshots, CIFS and NFS
exposers, providers, replicas and tiering profiles.

As there, the operation runs as `storeflow ...` in a child process, stalls at a chosen
function inside `perform`, is SIGKILLed, and after one lease (2 s) the test checks that
reconcile leaves a consistent state without a manual step: the killed run is Crashed in
Prefect, nothing is INPROGRESS, an interrupted create is rolled back (its row, its staging
tree, its block in the server's configuration file, its Prefect deployment all gone; the
configuration file byte-identical to before), an interrupted delete is put back (ERRORED,
still there, still live), and the next operation on the resource works.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.exposers import (
    cifs_exposer_allow,
    cifs_exposer_create,
    cifs_exposer_delete,
    nfs_exposer_allow,
    nfs_exposer_create,
    nfs_exposer_delete,
)
from storeflow.flows.profiles import profile_create, profile_delete
from storeflow.flows.providers import provider_create, provider_delete
from storeflow.flows.reconcile import reconcile
from storeflow.flows.replicas import replica_create, replica_delete, replica_update
from storeflow.flows.snapshots import snapshot_create, snapshot_delete
from storeflow.flows.spaces import space_create
from storeflow.models.exposers import (
    CifsAccessRule,
    CifsExposerSpec,
    NfsClientRule,
    NfsExposerSpec,
)
from storeflow.models.replicas import ProfileSpec, ProviderSpec, ReplicaSpec, ReplicaUpdate
from storeflow.models.schemas import SnapshotSpec, SpaceSpec
from storeflow.models.status import Status
from storeflow.tasks import schedules
from storeflow.tasks.reconcile import INTERRUPTED, UNDONE
from storeflow.tasks.snapshots import snapshot_path
from tests.exposers.conftest import Setup, digest, nfs_config, samba_config, save, start_samba
from tests.lifecycle.conftest import (
    big_tree,
    exists,
    holder,
    kill_during,
    leftovers,
    read,
    run,
    state_type_of,
    tree,
)
from tests.services.exportfs import private_exportfs

# -- snapshots ----------------------------------------------------------------------------


def snapshot_dir(config: StoreflowConfig, space: str) -> Path:
    return snapshot_path(config, read(config, "space", space).id, "x").parent


def space_with_data(config: StoreflowConfig, tmp_path: Path, name: str) -> Path:
    assert run(space_create, spec=SpaceSpec(name=name)).name == "Active"
    path = config.storage.spaces_dir / name
    big_tree(tmp_path / "files")
    (path / "data").mkdir()
    for source in sorted((tmp_path / "files" / "data").iterdir()):
        (path / "data" / source.name).write_bytes(source.read_bytes())
    return path


def test_snapshot_create_killed_mid_copy(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    space = space_with_data(config, tmp_path, "src")
    argv = ["snapshot", "create", "src", "day-1", "--mode", "copy"]
    kill_during(tmp_path, "storeflow.tasks.fstools:copy_file", "after", argv)
    base = snapshot_dir(config, "src")
    assert not (base / "day-1").exists()  # never half a snapshot under its name
    assert leftovers(base), "the kill came before the copy started"
    owner = holder(config, "snapshot", "day-1", space="src")

    assert run(reconcile).is_completed()

    assert not exists(config, "snapshot", "day-1", space="src")  # the create is rolled back
    assert leftovers(base) == []  # its staging tree is gone
    assert state_type_of(owner) == "CRASHED"
    again = run(snapshot_create, spec=SnapshotSpec(space="src", name="day-1", mode="copy"))
    assert again.name == "Active", again.message
    assert tree(base / "day-1") == tree(space)


def test_snapshot_delete_killed_after_moving_the_tree_aside(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    space_with_data(config, tmp_path, "src")
    assert run(snapshot_create, spec=SnapshotSpec(space="src", name="day-1")).name == "Active"
    base = snapshot_dir(config, "src")
    before = tree(base / "day-1")
    argv = ["snapshot", "delete", "src", "day-1"]
    kill_during(tmp_path, "storeflow.models.repository:hard_delete", "before", argv)
    assert not (base / "day-1").exists() and leftovers(base)  # moved aside, not removed
    owner = holder(config, "snapshot", "day-1", space="src")

    run(reconcile)

    snap = read(config, "snapshot", "day-1", space="src")  # the delete never committed
    assert snap.lock_owner is None and snap.status is Status.ERRORED
    assert snap.status_message == INTERRUPTED and not snap.deleted
    assert tree(base / "day-1") == before and leftovers(base) == []
    assert state_type_of(owner) == "CRASHED"
    deleted = run(snapshot_delete, space="src", name="day-1", etag=snap.etag)
    assert deleted.name == "Deleted", deleted.message
    assert not (base / "day-1").exists()


# -- exposers: kill after the configuration file is written, before the server reloads ----


class Exposers:
    """One protocol's server, its storeflow config (a saved block) and how to ask for an
    exposer of a space on the command line and through the flows."""

    def __init__(self, protocol: str, setup: Setup, files: tuple[Path, ...], reload: str):
        self.protocol, self.setup, self.files, self.reload = protocol, setup, files, reload
        self.kind = f"{protocol}-exposer"

    def spec(self, name: str, space: str) -> CifsExposerSpec | NfsExposerSpec:
        if self.protocol == "cifs":
            return CifsExposerSpec.model_validate(
                {"name": name, "space": space, "access": [{"to": "alice"}]}
            )
        return NfsExposerSpec.model_validate(
            {"name": name, "space": space, "clients": [{"client": "127.0.0.1", "access": "rw"}]}
        )

    def create(self, name: str, space: str) -> Any:
        flow = cifs_exposer_create if self.protocol == "cifs" else nfs_exposer_create
        return self.setup.run(flow, spec=self.spec(name, space))

    def delete(self, name: str, etag: int) -> Any:
        flow = cifs_exposer_delete if self.protocol == "cifs" else nfs_exposer_delete
        return self.setup.run(flow, name=name, etag=etag)

    def allow(self, name: str, to: str) -> Any:
        if self.protocol == "cifs":
            return self.setup.run(cifs_exposer_allow, name=name, rule=CifsAccessRule(to=to))
        rule = NfsClientRule(client=to, access="rw")
        return self.setup.run(nfs_exposer_allow, name=name, rule=rule)

    def create_argv(self, name: str, space: str) -> list[str]:
        allow = "alice" if self.protocol == "cifs" else "127.0.0.1:rw"
        argv = ["exposer", "create", self.protocol, name, "--space", space, "--allow", allow]
        return [*argv, "--config", self.setup.name]

    def delete_argv(self, name: str) -> list[str]:
        return ["exposer", "delete", self.protocol, name, "--config", self.setup.name]

    @property
    def managed(self) -> str:
        return self.files[0].read_text()


@pytest.fixture(params=["cifs", "nfs"])
def exposers(
    request: pytest.FixtureRequest, tmp_path: Path, storeflow_home: Path, lease: None
) -> Iterator[Exposers]:
    if request.param == "cifs":
        for server in start_samba(tmp_path / "smbd", []):
            setup = save(samba_config(server))
            files = (setup.config.samba.include_path, server.conf)
            yield Exposers("cifs", setup, files, "storeflow.tasks.exposers.samba:SambaBackend")
        return
    exportfs = private_exportfs(tmp_path / "exportfs")
    managed = exportfs.exports_d / "storeflow.exports"
    setup = save(
        nfs_config(
            exports_path=managed, main_exports=[exportfs.etc_exports], exportfs=exportfs.wrapper
        )
    )
    backend = "storeflow.tasks.exposers.kernel_nfs:KernelNfsBackend"
    yield Exposers("nfs", setup, (managed, exportfs.etc_exports), backend)


def test_exposer_create_killed_between_writing_and_reloading(
    exposers: Exposers, tmp_path: Path
) -> None:
    setup = exposers.setup
    setup.space("base")
    setup.space("proj")
    assert exposers.create("keep", "base").name == "Active"  # the file is storeflow's
    before, rows = digest(*exposers.files), setup.rows()

    argv = exposers.create_argv("docs", "proj")
    kill_during(tmp_path, f"{exposers.reload}.activate", "before", argv)
    assert "storeflow-exposer: docs" in exposers.managed  # written, never made live
    owner = setup.read(exposers.kind, "docs").lock_owner
    assert owner is not None

    state = setup.run(reconcile)

    assert state.is_completed(), state.message
    assert digest(*exposers.files) == before  # the block nobody recorded is gone
    assert setup.rows() == rows  # and so is the row: the name is free again
    assert any(c.name == "docs" and c.detail == UNDONE for c in state.result())
    assert state_type_of(owner) == "CRASHED"
    again = exposers.create("docs", "proj")
    assert again.name == "Active", again.message
    assert "storeflow-exposer: docs" in exposers.managed


def test_exposer_delete_killed_between_writing_and_reloading(
    exposers: Exposers, tmp_path: Path
) -> None:
    setup = exposers.setup
    setup.space("proj")
    assert exposers.create("docs", "proj").name == "Active"
    before = digest(*exposers.files)

    kill_during(tmp_path, f"{exposers.reload}.activate", "before", exposers.delete_argv("docs"))
    assert "storeflow-exposer: docs" not in exposers.managed
    owner = setup.read(exposers.kind, "docs").lock_owner
    assert owner is not None

    setup.run(reconcile)

    exposer = setup.read(exposers.kind, "docs")  # the delete never committed: put back
    assert exposer.lock_owner is None and exposer.status is Status.ERRORED
    assert exposer.status_message == INTERRUPTED and not exposer.deleted
    assert digest(*exposers.files) == before
    assert state_type_of(owner) == "CRASHED"
    deleted = exposers.delete("docs", exposer.etag)
    assert deleted.name == "Deleted", deleted.message
    assert "storeflow-exposer: docs" not in exposers.managed


def test_exposer_allow_killed_between_writing_and_reloading(
    exposers: Exposers, tmp_path: Path
) -> None:
    """An update (Manila's allow_access) stopped after the new rule is written: reconcile
    puts the file back as the record says, so no rule nobody recorded stays behind."""
    setup = exposers.setup
    setup.space("proj")
    assert exposers.create("docs", "proj").name == "Active"
    before = digest(*exposers.files)
    to = "bob" if exposers.protocol == "cifs" else "127.0.0.2"

    argv = ["exposer", "allow", exposers.protocol, "docs", to, "--config", setup.name]
    kill_during(tmp_path, f"{exposers.reload}.activate", "before", argv)
    assert to in exposers.managed  # written, never made live
    owner = setup.read(exposers.kind, "docs").lock_owner
    assert owner is not None

    setup.run(reconcile)

    exposer = setup.read(exposers.kind, "docs")
    assert exposer.lock_owner is None and not exposer.deleted
    assert digest(*exposers.files) == before  # the rule nobody recorded is gone
    assert state_type_of(owner) == "CRASHED"
    assert to not in exposers.managed
    again = exposers.allow("docs", to)
    assert again.name == "Active", again.message
    assert to in exposers.managed


# -- providers, replicas, profiles: records and Prefect deployments --------------------------


def provider(tmp_path: Path, name: str = "backup") -> ProviderSpec:
    remote = tmp_path / f"remote-{name}"
    remote.mkdir(exist_ok=True)
    return ProviderSpec(name=name, protocol="local", directory=str(remote))


def test_provider_create_killed_mid_perform(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    spec = provider(tmp_path)
    argv = ["provider", "create", "backup", "--directory", spec.directory]
    kill_during(tmp_path, "storeflow.tasks.providers:ProviderBuilder.perform", "before", argv)
    owner = holder(config, "provider", "backup")

    run(reconcile)

    assert not exists(config, "provider", "backup")
    assert state_type_of(owner) == "CRASHED"
    assert run(provider_create, spec=spec).name == "Active"


def test_provider_delete_killed_mid_perform(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    assert run(provider_create, spec=provider(tmp_path)).name == "Active"
    where = "storeflow.tasks.providers:ProviderDeleter.perform"
    kill_during(tmp_path, where, "before", ["provider", "delete", "backup"])
    owner = holder(config, "provider", "backup")

    run(reconcile)

    found = read(config, "provider", "backup")
    assert found.lock_owner is None and found.status is Status.ERRORED
    assert found.status_message == INTERRUPTED and not found.deleted
    assert state_type_of(owner) == "CRASHED"
    assert run(provider_delete, name="backup", etag=found.etag).name == "Deleted"
    assert not exists(config, "provider", "backup")


def replica_ready(config: StoreflowConfig, tmp_path: Path) -> ReplicaSpec:
    assert run(space_create, spec=SpaceSpec(name="synced")).name == "Active"
    assert run(provider_create, spec=provider(tmp_path)).name == "Active"
    return ReplicaSpec.model_validate(
        {"name": "nightly", "space": "synced", "provider": "backup", "direction": "upstream"}
    )


REPLICA_ARGV = ["replica", "create", "nightly", "--space", "synced", "--provider", "backup"]


def test_replica_create_killed_after_its_schedule_is_made(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    spec = replica_ready(config, tmp_path)
    argv = [*REPLICA_ARGV, "--direction", "upstream", "--interval", "1d"]
    kill_during(tmp_path, "storeflow.tasks.schedules:create", "after", argv)
    assert schedules.read("replica-sync/nightly") is not None  # made before the kill
    owner = holder(config, "replica", "nightly")
    assert read(config, "replica", "nightly").status is Status.INPROGRESS

    run(reconcile)

    assert not exists(config, "replica", "nightly")
    assert schedules.read("replica-sync/nightly") is None  # no schedule left behind
    assert state_type_of(owner) == "CRASHED"
    assert run(replica_create, spec=spec).name == "Active"
    assert schedules.read("replica-sync/nightly") is not None


def test_replica_delete_killed_after_pausing_its_schedule(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    assert run(replica_create, spec=replica_ready(config, tmp_path)).name == "Active"
    delete_killed_after_pausing(config, tmp_path, "replica", "nightly", replica_delete)


def delete_killed_after_pausing(
    config: StoreflowConfig, tmp_path: Path, kind: str, name: str, delete: Any
) -> None:
    """Kill `<kind> delete NAME` after it paused the schedule; reconcile puts the record
    back ERRORED with its schedule resumed, and the next delete goes through."""
    deployment = f"{'replica-sync' if kind == 'replica' else 'profile-tier'}/{name}"
    kill_during(tmp_path, "storeflow.tasks.schedules:pause", "after", [kind, "delete", name])
    paused = schedules.read(deployment)
    assert paused is not None and paused.paused
    owner = holder(config, kind, name)

    run(reconcile)

    record = read(config, kind, name)  # the delete never committed: put back
    assert record.lock_owner is None and record.status is Status.ERRORED
    assert record.status_message == INTERRUPTED and not record.deleted
    resumed = schedules.read(deployment)
    assert resumed is not None and not resumed.paused
    assert state_type_of(owner) == "CRASHED"
    assert run(delete, name=name, etag=record.etag).name == "Deleted"
    assert schedules.read(deployment) is None


def interval_of(full_name: str) -> float:
    found = schedules.read(full_name)
    assert found is not None and len(found.schedules) == 1
    interval = getattr(found.schedules[0].schedule, "interval", None)
    assert interval is not None
    return float(interval.total_seconds())


def test_replica_update_killed_after_replacing_its_schedule(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    daily = {
        **replica_ready(config, tmp_path).model_dump(mode="json"),
        "schedule": {"interval": 86400},
    }
    spec = ReplicaSpec.model_validate(daily)
    assert run(replica_create, spec=spec).name == "Active"
    argv = ["replica", "update", "nightly", "--changes", '{"schedule": {"interval": 7200}}']
    kill_during(tmp_path, "storeflow.tasks.schedules:create", "after", argv)
    assert interval_of("replica-sync/nightly") == 7200  # replaced before the kill
    owner = holder(config, "replica", "nightly")

    run(reconcile)

    replica = read(config, "replica", "nightly")  # the update never committed
    assert replica.lock_owner is None and replica.status is Status.ERRORED
    assert replica.spec["schedule"]["interval"] == 86400
    assert interval_of("replica-sync/nightly") == 86400  # the schedule agrees with it again
    assert state_type_of(owner) == "CRASHED"
    changes = ReplicaUpdate.model_validate({"schedule": {"interval": 7200}})
    again = run(replica_update, name="nightly", etag=replica.etag, changes=changes)
    assert again.name == "Active", again.message
    assert interval_of("replica-sync/nightly") == 7200


def test_profile_create_killed_after_its_schedule_is_made(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    argv = ["profile", "create", "tiers", "--pool", f"fast={fast}", "--pool", f"slow={slow}"]
    argv += ["--rule", "", "--interval", "1d"]
    kill_during(tmp_path, "storeflow.tasks.schedules:create", "after", argv)
    assert schedules.read("profile-tier/tiers") is not None
    owner = holder(config, "profile", "tiers")

    run(reconcile)

    assert not exists(config, "profile", "tiers")
    assert schedules.read("profile-tier/tiers") is None
    assert state_type_of(owner) == "CRASHED"
    spec = ProfileSpec.model_validate(
        {
            "name": "tiers",
            "pools": [{"name": "fast", "path": str(fast)}, {"name": "slow", "path": str(slow)}],
            "rules": [{}],
        }
    )
    assert run(profile_create, spec=spec).name == "Active"
    assert schedules.read("profile-tier/tiers") is not None


def test_profile_delete_killed_after_pausing_its_schedule(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    """The same skeleton as a replica's delete, with the profile's own undo registered
    in the kinds registry: the schedule resumed, the profile put back."""
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    fast.mkdir()
    spec = ProfileSpec.model_validate(
        {
            "name": "tiers",
            "pools": [{"name": "fast", "path": str(fast)}, {"name": "slow", "path": str(slow)}],
            "rules": [{}],
            "schedule": {"interval": 86400},
        }
    )
    assert run(profile_create, spec=spec).name == "Active"
    delete_killed_after_pausing(config, tmp_path, "profile", "tiers", profile_delete)
