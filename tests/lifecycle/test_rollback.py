"""Failures in perform and in post roll back what perform did and mark ERRORED."""

import os
from pathlib import Path

import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.spaces import space_create, space_update
from storeflow.flows.templates import template_create
from storeflow.models import repository
from storeflow.models.schemas import SpaceSpec, SpaceUpdate, TemplateSpec
from storeflow.models.status import Status
from tests.lifecycle.conftest import read, run, tree


def test_failure_inside_perform_removes_the_half_made_space(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    # Break the template behind storeflow's back: shutil refuses to copy a named
    # pipe, so installing it fails after the space directory and some files exist.
    os.mkfifo(config.storage.templates_dir / "starter" / "zz-pipe")

    state = run(space_create, spec=SpaceSpec(name="half-made", template="starter"))

    assert state.is_failed() and state.name == "Errored"
    assert not (config.storage.spaces_dir / "half-made").exists()  # rolled back
    space = read(config, "space", "half-made")
    assert space.status is Status.ERRORED
    assert space.status_message and space.status_message.startswith("create failed:")
    assert space.lock_owner is None


def test_failure_in_post_rolls_back_the_rename(
    config: StoreflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(space_create, spec=SpaceSpec(name="before"))
    (config.storage.spaces_dir / "before" / "keep.txt").write_text("data")
    contents = tree(config.storage.spaces_dir / "before")
    space = read(config, "space", "before")

    real_release = repository.release
    calls = {"n": 0}

    def failing_release(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # post's write fails; record_failure's write goes through
            raise RuntimeError("database went away during post")
        return real_release(*args, **kwargs)

    monkeypatch.setattr(repository, "release", failing_release)
    state = run(space_update, name="before", etag=space.etag, changes=SpaceUpdate(rename="after"))

    assert state.name == "Errored" and "database went away" in str(state.message)
    assert not (config.storage.spaces_dir / "after").exists()
    assert tree(config.storage.spaces_dir / "before") == contents
    after = read(config, "space", "before")
    assert after.status is Status.ERRORED and after.name == "before"
