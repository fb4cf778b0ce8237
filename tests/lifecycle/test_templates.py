"""Templates: the store, its size limit and its path safety."""

import os
from pathlib import Path

import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.spaces import space_create, space_delete
from storeflow.flows.templates import template_create, template_delete, template_update
from storeflow.models.schemas import SpaceSpec, TemplateSpec, TemplateUpdate
from storeflow.models.status import Status
from tests.lifecycle.conftest import exists, read, run, tree


def test_create_copies_the_tree_with_modes_and_times(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    script = sample_tree / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o750)
    os.utime(script, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))

    state = run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))

    assert state.name == "Active", state.message
    copy = config.storage.templates_dir / "starter"
    assert tree(copy) == tree(sample_tree)
    assert (copy / "run.sh").stat().st_mode & 0o777 == 0o750
    assert (copy / "run.sh").stat().st_mtime_ns == 1_600_000_000_000_000_000
    template = read(config, "template", "starter")
    assert template.state["files"] == 3


def test_too_big_is_refused_before_anything_is_copied(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    (sample_tree / "big.bin").write_bytes(b"x" * 5000)
    from storeflow.blocks.config import StoreflowConfig as Config
    from storeflow.blocks.storage import StorageBlock

    small = Config(storage=StorageBlock(root=config.storage.root, template_max_size=4096))
    small.save("small-templates", overwrite=True)

    state = run(
        template_create,
        spec=TemplateSpec(name="huge", source=sample_tree),
        config="small-templates",
    )

    assert state.name == "Refused" and "limited to 4K" in str(state.message)
    assert not exists(config, "template", "huge")
    assert not (config.storage.templates_dir / "huge").exists()


def test_source_inside_storeflow_root_is_refused(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    state = run(
        template_create,
        spec=TemplateSpec(name="again", source=config.storage.templates_dir / "starter"),
    )
    assert state.name == "Refused" and "overlaps" in str(state.message)


def test_source_symlink_is_not_followed(config: StoreflowConfig, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("/etc")
    state = run(template_create, spec=TemplateSpec(name="etc", source=link))
    assert state.name == "Refused" and "not a directory" in str(state.message)


def test_rename_stays_inside_the_store(config: StoreflowConfig, sample_tree: Path) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    template = read(config, "template", "starter")

    state = run(
        template_update,
        name="starter",
        etag=template.etag,
        changes=TemplateUpdate(rename="starter-v2"),
    )

    assert state.name == "Active", state.message
    assert sorted(p.name for p in config.storage.templates_dir.iterdir()) == ["starter-v2"]
    with pytest.raises(ValueError):
        TemplateUpdate(rename="../outside")


def test_replace_from_another_directory(
    config: StoreflowConfig, sample_tree: Path, tmp_path: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    other = tmp_path / "v2"
    other.mkdir()
    (other / "NEW").write_text("new")
    template = read(config, "template", "starter")

    state = run(
        template_update, name="starter", etag=template.etag, changes=TemplateUpdate(source=other)
    )

    assert state.name == "Active", state.message
    assert tree(config.storage.templates_dir / "starter") == {"NEW": b"new"}
    assert [p.name for p in config.storage.templates_dir.iterdir()] == ["starter"]


def test_delete_refuses_a_template_that_is_a_symlink_out_of_the_store(
    config: StoreflowConfig, sample_tree: Path, tmp_path: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="victim", source=sample_tree))
    store_entry = config.storage.templates_dir / "victim"
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep").write_text("do not delete")
    # Someone swaps the store entry for a symlink pointing outside the store.
    os.rename(store_entry, tmp_path / "moved-away")
    store_entry.symlink_to(outside)
    template = read(config, "template", "victim")

    state = run(template_delete, name="victim", etag=template.etag)

    assert state.name == "Refused" and "symbolic link" in str(state.message)
    assert (outside / "keep").read_text() == "do not delete"
    assert read(config, "template", "victim").status is Status.ACTIVE


def test_delete_of_installed_template_errors_but_it_stays_usable(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="starter", source=sample_tree))
    run(space_create, spec=SpaceSpec(name="uses-it", template="starter"))
    template = read(config, "template", "starter")

    state = run(template_delete, name="starter", etag=template.etag)

    assert state.name == "Errored" and "installed in uses-it" in str(state.message)
    errored = read(config, "template", "starter")
    assert errored.status is Status.ERRORED and not errored.deleted
    assert tree(config.storage.templates_dir / "starter") == tree(sample_tree)
    # ERRORED, but usable: a new space can still start from it.
    assert run(space_create, spec=SpaceSpec(name="second", template="starter")).name == "Active"

    for name in ("uses-it", "second"):
        assert run(space_delete, name=name, etag=read(config, "space", name).etag).name == "Deleted"
    state = run(template_delete, name="starter", etag=read(config, "template", "starter").etag)
    assert state.name == "Deleted"
    assert not (config.storage.templates_dir / "starter").exists()


def test_rename_onto_an_existing_name_is_refused_untouched(
    config: StoreflowConfig, sample_tree: Path
) -> None:
    run(template_create, spec=TemplateSpec(name="a", source=sample_tree))
    run(template_create, spec=TemplateSpec(name="b", source=sample_tree))
    (config.storage.templates_dir / "stray").mkdir()  # on disk only, empty
    template = read(config, "template", "a")

    for target, reason in (
        ("b", "template 'b' already exists"),
        ("stray", "already exists on disk"),
    ):
        state = run(
            template_update, name="a", etag=template.etag, changes=TemplateUpdate(rename=target)
        )
        assert state.name == "Refused" and reason in str(state.message)
    assert read(config, "template", "a") == template
    assert tree(config.storage.templates_dir / "a") == tree(sample_tree)
    assert not any((config.storage.templates_dir / "stray").iterdir())
