"""Providers, replicas and profiles change in place (their update flows), keeping their
identity and etag history; a change that breaks a rule is refused and changes nothing."""

from __future__ import annotations

from pathlib import Path

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.profiles import profile_create, profile_update
from storeflow.flows.providers import provider_update
from storeflow.flows.replicas import replica_create, replica_sync, replica_update
from storeflow.models.replicas import (
    ProfileSpec,
    ProfileUpdate,
    ProviderUpdate,
    ReplicaUpdate,
    ScheduleSpec,
)
from storeflow.sandbox.models import Progress
from storeflow.tasks import schedules
from tests.flows_transfer.conftest import last_execution, make_files, run
from tests.flows_transfer.test_replicas import local_provider, make_space, replica, tree
from tests.lifecycle.conftest import read


def test_provider_and_replica_update_in_place(config: StoreflowConfig, tmp_path: Path) -> None:
    space = make_space(config, "docs")
    make_files(space, {"a.txt": b"a"})
    local_provider("archive", tmp_path / "old")
    assert run(replica_create, spec=replica("docs-up", "docs", "archive", "upstream")).name == (
        "Active"
    )
    before = read(config, "provider", "archive")

    # A directory that does not exist: refused, the provider as it was.
    state = run(
        provider_update,
        name="archive",
        changes=ProviderUpdate(directory=str(tmp_path / "missing")),
    )
    assert state.name == "Refused" and "does not exist" in (state.message or "")
    assert read(config, "provider", "archive").spec == before.spec

    (tmp_path / "new").mkdir()
    state = run(
        provider_update,
        name="archive",
        changes=ProviderUpdate(directory=str(tmp_path / "new")),
        etag=before.etag,
    )
    assert state.name == "Active", state.message
    after = read(config, "provider", "archive")
    assert after.id == before.id and after.spec["directory"] == str(tmp_path / "new")
    assert after.etag != before.etag

    # The replica syncs with the provider's new directory from its next run.
    assert run(replica_sync, name="docs-up").is_completed()
    assert tree(tmp_path / "new" / "docs") == {"a.txt": b"a"}
    # ... recorded as an execution of the transfer task replica@docs-up.
    recorded = last_execution(config, "replica@docs-up")
    assert (recorded.outcome, recorded.files, recorded.bytes) == ("Synced", 1, 1)
    assert recorded.progress & Progress.PROGRESS_FINAL_DONE
    assert not (tmp_path / "old" / "docs").exists()

    # Its schedule and direction change in place; its deployment follows.
    state = run(
        replica_update,
        name="docs-up",
        changes=ReplicaUpdate(schedule=ScheduleSpec(cron="0 3 * * *"), direction="bidirectional"),
    )
    assert state.name == "Active", state.message
    updated = read(config, "replica", "docs-up")
    assert updated.spec["direction"] == "bidirectional"
    deployment = schedules.read("replica-sync/docs-up")
    assert deployment is not None and deployment.parameters == {"name": "docs-up"}
    [schedule] = deployment.schedules
    assert getattr(schedule.schedule, "cron", None) == "0 3 * * *"
    assert "bidirectional" in (deployment.description or "")

    # A second upstream replica of the space would now conflict with the bidirectional one.
    assert run(replica_create, spec=replica("docs-2", "docs", "archive", "downstream")).name == (
        "Refused"
    )
    # An unknown provider: refused, the replica unchanged.
    state = run(replica_update, name="docs-up", changes=ReplicaUpdate(provider="nowhere"))
    assert state.name == "Refused"
    assert read(config, "replica", "docs-up").spec == updated.spec


def test_profile_update_checks_the_whole_spec(config: StoreflowConfig, tmp_path: Path) -> None:
    pools = [
        {"name": "fast", "path": str(tmp_path / "fast")},
        {"name": "slow", "path": str(tmp_path / "slow")},
    ]
    spec = ProfileSpec.model_validate(
        {"name": "tiers", "pools": pools, "rules": [{"older_than": 3600}]}
    )
    assert run(profile_create, spec=spec).name == "Active"

    # Three pools but one rule: the merged spec is refused, naming why.
    three = [*pools, {"name": "cold", "path": str(tmp_path / "cold")}]
    state = run(
        profile_update, name="tiers", changes=ProfileUpdate.model_validate({"pools": three})
    )
    assert state.name == "Refused" and "3 pools need 2 rules" in (state.message or "")
    assert not (tmp_path / "cold").exists()

    state = run(
        profile_update,
        name="tiers",
        changes=ProfileUpdate.model_validate(
            {"pools": three, "rules": [{"older_than": 3600}, {"older_than": 86400}]}
        ),
    )
    assert state.name == "Active", state.message
    assert (tmp_path / "cold").is_dir()
    assert [p["name"] for p in read(config, "profile", "tiers").spec["pools"]] == [
        "fast", "slow", "cold"
    ]  # fmt: skip


def test_replica_sync_runs_the_transfer_callbacks(config: StoreflowConfig, tmp_path: Path) -> None:
    space = make_space(config, "pics")
    make_files(space, {"p.jpg": b"p"})
    local_provider("vault", tmp_path / "vault")
    assert run(replica_create, spec=replica("pics-up", "pics", "vault", "upstream")).name == (
        "Active"
    )
    hooks = tmp_path / "hooks"
    (hooks / "before_task_executed").mkdir(parents=True)
    (hooks / "before_task_executed" / "hold.py").write_text("def run(req):\n    return False\n")
    state = run(replica_sync, name="pics-up", callbacks_dir=str(hooks))
    assert state.name == "Vetoed", state.message
    assert "BEFORE_TASK_EXECUTED callback before_task_executed/hold.py vetoed the sync" in (
        state.message or ""
    )
    assert not (tmp_path / "vault" / "pics").exists()
    assert last_execution(config, "replica@pics-up").outcome == "Vetoed"
