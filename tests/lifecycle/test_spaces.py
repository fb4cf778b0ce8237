"""Spaces through the real flows, on a real filesystem."""

import os
from pathlib import Path

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.spaces import space_create, space_delete, space_update
from storeflow.flows.templates import template_create
from storeflow.models.schemas import SpaceSpec, SpaceUpdate, TemplateSpec
from storeflow.models.status import Status
from tests.lifecycle.conftest import exists, read, run, tree


def test_create_makes_the_directory_and_records_active(config: StoreflowConfig) -> None:
    state = run(space_create, spec=SpaceSpec(name="projects-alpha", quota="10G"))

    assert state.is_completed() and state.name == "Active"
    space = read(config, "space", "projects-alpha")
    assert space.status is Status.ACTIVE
    assert space.etag == 3  # inserted (1), INPROGRESS (2), ACTIVE (3): every write bumps it
    assert space.spec["quota"] == 10 * 1024**3
    assert Path(space.state["path"]) == config.storage.spaces_dir / "projects-alpha"
    assert Path(space.state["path"]).is_dir()
    assert space.lock_owner is None
    assert state.result()["id"] == space.id


def test_flow_run_is_named_after_what_it_touches(config: StoreflowConfig) -> None:
    from prefect.client.orchestration import get_client

    state = run(space_create, spec=SpaceSpec(name="named"))
    with get_client(sync_client=True) as client:
        assert state.state_details.flow_run_id is not None
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
        task_runs = client.read_task_runs()
    assert flow_run.name == "space-create/named"
    names = {t.name for t in task_runs if t.flow_run_id == flow_run.id}
    assert names == {
        "space-create/named: pre",
        "space-create/named: perform",
        "space-create/named: post",
    }


def test_duplicate_name_is_refused_and_nothing_changes(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="dup"))
    before = read(config, "space", "dup")

    state = run(space_create, spec=SpaceSpec(name="dup"))

    assert state.is_failed() and state.name == "Refused"
    assert "already exists" in str(state.message)
    assert read(config, "space", "dup") == before


def test_update_with_current_etag_renames_and_resizes(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="old-name"))
    (config.storage.spaces_dir / "old-name" / "data.bin").write_bytes(b"x" * 1000)
    etag = read(config, "space", "old-name").etag

    state = run(
        space_update, name="old-name", etag=etag, changes=SpaceUpdate(rename="new-name", quota="1M")
    )

    assert state.name == "Active", state.message
    assert not exists(config, "space", "old-name")
    space = read(config, "space", "new-name")
    assert space.spec == {"name": "new-name", "quota": 1024**2, "template": None}
    assert space.state["usage_bytes"] == 1000 and space.state["files"] == 1
    assert (config.storage.spaces_dir / "new-name" / "data.bin").exists()
    assert not (config.storage.spaces_dir / "old-name").exists()
    assert space.etag == etag + 2


def test_stale_etag_is_refused_and_the_resource_is_untouched(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="contested"))
    before = read(config, "space", "contested")

    state = run(
        space_update, name="contested", etag=before.etag - 1, changes=SpaceUpdate(rename="other")
    )

    assert state.is_failed() and state.name == "Refused"
    assert f"etag {before.etag - 1} given, now {before.etag}" in str(state.message)
    assert read(config, "space", "contested") == before
    assert (config.storage.spaces_dir / "contested").is_dir()


def test_quota_below_usage_is_refused(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="full"))
    (config.storage.spaces_dir / "full" / "big").write_bytes(b"x" * 4096)
    space = read(config, "space", "full")

    state = run(space_update, name="full", etag=space.etag, changes=SpaceUpdate(quota=1024))

    assert state.name == "Refused" and "quota" in str(state.message)
    assert read(config, "space", "full").spec["quota"] == 0


def test_delete_of_empty_space_hard_deletes_the_row(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="short-lived"))
    space = read(config, "space", "short-lived")

    state = run(space_delete, name="short-lived", etag=space.etag)

    assert state.is_completed() and state.name == "Deleted"
    assert not exists(config, "space", "short-lived")
    assert not (config.storage.spaces_dir / "short-lived").exists()
    assert [p.name for p in config.storage.spaces_dir.iterdir()] == []  # nothing left aside


def test_delete_of_non_empty_space_needs_force(config: StoreflowConfig) -> None:
    run(space_create, spec=SpaceSpec(name="has-data"))
    data = config.storage.spaces_dir / "has-data" / "results.csv"
    data.write_text("a,b\n")
    space = read(config, "space", "has-data")

    refused = run(space_delete, name="has-data", etag=space.etag)
    assert refused.name == "Refused" and "not empty (1 files" in str(refused.message)
    assert data.exists() and read(config, "space", "has-data") == space

    forced = run(space_delete, name="has-data", etag=space.etag, force=True)
    assert forced.name == "Deleted"
    assert not data.exists()


def test_template_installed_at_creation_and_uninstalled_when_unchanged(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    state = run(space_create, spec=SpaceSpec(name="from-template", template="starter"))
    assert state.name == "Active", state.message
    space_dir = config.storage.spaces_dir / "from-template"
    assert tree(space_dir) == tree(sample_tree)
    space = read(config, "space", "from-template")
    assert space.state["template"] == "starter"

    # A space holding only its unchanged template counts as empty...
    (space_dir / "user-file").write_text("mine")
    state = run(
        space_update,
        name="from-template",
        etag=space.etag,
        changes=SpaceUpdate(uninstall_template=True),
    )
    assert state.name == "Active", state.message
    # ...and uninstalling removes exactly the template's files.
    assert tree(space_dir) == {"user-file": b"mine"}
    assert read(config, "space", "from-template").state["template"] is None


def test_uninstall_refused_when_the_installed_copy_changed(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    run(space_create, spec=SpaceSpec(name="edited", template="starter"))
    space_dir = config.storage.spaces_dir / "edited"
    (space_dir / "README").write_text("my own notes, longer than before\n")
    before = tree(space_dir)
    space = read(config, "space", "edited")

    state = run(
        space_update, name="edited", etag=space.etag, changes=SpaceUpdate(uninstall_template=True)
    )

    assert state.is_failed() and state.name == "Errored"
    assert "README" in str(state.message) and "user data" in str(state.message)
    assert tree(space_dir) == before
    after = read(config, "space", "edited")
    assert after.status is Status.ERRORED and "user data" in (after.status_message or "")


def test_space_with_template_bigger_than_quota_is_refused(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    state = run(space_create, spec=SpaceSpec(name="tiny", quota=10, template="starter"))
    assert state.name == "Refused" and "quota" in str(state.message)
    assert not exists(config, "space", "tiny")
    assert not (config.storage.spaces_dir / "tiny").exists()


def test_bad_names_never_reach_the_filesystem(config: StoreflowConfig) -> None:
    import pytest
    from pydantic import ValidationError

    bad_names = ("../escape", "a/b", ".hidden", "-dash", "x" * 64, "tab\tname", "ünïcode", "")
    for bad in bad_names:
        with pytest.raises(ValidationError, match="name"):
            SpaceSpec(name=bad)
    # Through the flow, as the UI and the REST API pass parameters (a plain dict): the
    # run fails on the spec, and neither the filesystem nor the database saw the name.
    run(space_create, spec=SpaceSpec(name="good"))  # so the folder exists to be checked
    for bad in bad_names[:4]:
        state = run(space_create, spec={"name": bad})
        assert state.is_failed(), (bad, state)
        assert "name" in str(state.message), state.message
        assert not exists(config, "space", bad)
    assert sorted(os.listdir(config.storage.spaces_dir)) == ["good"]
    assert not (config.storage.root / "escape").exists()


def test_rename_refused_while_something_points_at_the_path(config: StoreflowConfig) -> None:
    from storeflow.models import repository
    from storeflow.models.db import session_scope

    run(space_create, spec=SpaceSpec(name="exposed"))
    space = read(config, "space", "exposed")
    with session_scope(config.database_url) as session:  # e.g. a CIFS share of this space
        repository.insert(
            session, "cifs_exposer", "share1", {}, status=Status.ACTIVE, parent_id=space.id
        )
    state = run(space_update, name="exposed", etag=space.etag, changes=SpaceUpdate(rename="moved"))
    assert state.name == "Refused" and "in use by cifs_exposer share1" in str(state.message)
    assert (config.storage.spaces_dir / "exposed").is_dir()
