"""kill -9 in the middle of an operation: within one lease the resource is free again,
the killed run is Crashed in Prefect, and reconcile (or the next operation) leaves a
consistent state: nothing half-made under a final name, no staging tree, no stuck lock.

The operation runs in a child process (`storeflow` in-process against the suite's
Prefect database); a chosen function inside `perform` is wrapped to stall there, the
child is killed with SIGKILL, and the test checks what is left.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.reconcile import reconcile
from storeflow.flows.spaces import space_create, space_delete, space_update
from storeflow.flows.templates import template_create
from storeflow.models.schemas import SpaceSpec, SpaceUpdate, TemplateSpec
from storeflow.models.status import Status
from storeflow.tasks.reconcile import INTERRUPTED
from tests.killing import wait_for_marker
from tests.lifecycle.conftest import (
    CHILD,
    LEASE,
    ROOT,
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


def test_space_create_killed_while_installing_its_template(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    assert run(template_create, spec=TemplateSpec(name="tpl", source=big_tree(tmp_path / "s")))
    kill_during(
        tmp_path,
        "storeflow.tasks.fstools:copy_file",
        "after",
        ["space", "create", "alpha", "--template", "tpl"],
    )
    spaces = config.storage.spaces_dir
    assert not (spaces / "alpha").exists()  # never half a tree under the final name
    owner = holder(config, "space", "alpha")

    state = run(reconcile)

    assert state.is_completed()
    assert not exists(config, "space", "alpha")  # the create is rolled back
    assert leftovers(spaces) == []  # its staging tree is gone
    assert state_type_of(owner) == "CRASHED"
    again = run(space_create, spec=SpaceSpec(name="alpha", template="tpl"))
    assert again.name == "Active", again.message
    assert tree(spaces / "alpha") == tree(config.storage.templates_dir / "tpl")


def test_template_create_killed_mid_copy(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    source = big_tree(tmp_path / "src")
    kill_during(
        tmp_path,
        "storeflow.tasks.fstools:copy_file",
        "after",
        ["template", "create", "big", "--source", str(source)],
    )
    store = config.storage.templates_dir
    assert not (store / "big").exists()
    owner = holder(config, "template", "big")

    run(reconcile)

    assert not exists(config, "template", "big") and leftovers(store) == []
    assert state_type_of(owner) == "CRASHED"
    assert run(template_create, spec=TemplateSpec(name="big", source=source)).name == "Active"


def test_space_delete_killed_after_moving_the_tree_aside(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    assert run(space_create, spec=SpaceSpec(name="keep")).name == "Active"
    (config.storage.spaces_dir / "keep" / "data.txt").write_text("precious\n")
    kill_during(
        tmp_path,
        "storeflow.models.repository:hard_delete",
        "before",
        ["space", "delete", "keep", "--force"],
    )
    owner = holder(config, "space", "keep")

    run(reconcile)

    space = read(config, "space", "keep")  # the delete never committed: put back
    assert space.lock_owner is None and space.status is Status.ERRORED
    assert space.status_message == INTERRUPTED and not space.deleted
    assert (config.storage.spaces_dir / "keep" / "data.txt").read_text() == "precious\n"
    assert leftovers(config.storage.spaces_dir) == []
    assert state_type_of(owner) == "CRASHED"
    assert run(space_delete, name="keep", etag=space.etag, force=True).name == "Deleted"


def test_the_next_operation_takes_over_a_killed_update_without_reconcile(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    assert run(space_create, spec=SpaceSpec(name="busy", quota="1M")).name == "Active"
    kill_during(
        tmp_path,
        "storeflow.tasks.spaces:observed_state",
        "before",
        ["space", "update", "busy", "--quota", "2M"],
    )
    owner = holder(config, "space", "busy")

    current = read(config, "space", "busy")
    state = run(space_update, name="busy", etag=current.etag, changes=SpaceUpdate(quota="3M"))

    assert state.name == "Active", state.message
    assert read(config, "space", "busy").spec["quota"] == 3 * 1024**2
    assert state_type_of(owner) == "CRASHED"


def test_a_run_that_renews_its_lease_is_never_taken_over(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    """A live run holds its resource however long it works: the lease is renewed."""
    assert run(space_create, spec=SpaceSpec(name="slow")).name == "Active"
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD.replace("time.sleep(600)", "time.sleep(3 * float(os.environ['HOLD']))"),
            str(marker),
            "storeflow.tasks.spaces:observed_state",
            "before",
            "space",
            "update",
            "slow",
            "--quota",
            "5M",
        ],
        cwd=ROOT,
        env={**os.environ, "STOREFLOW_LOCK_LEASE": str(LEASE), "HOLD": str(LEASE)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_marker(child, marker, "observed_state")
        time.sleep(LEASE + 0.5)  # longer than one lease: still held
        current = read(config, "space", "slow")
        assert current.lock_owner is not None and current.status is Status.INPROGRESS
        refused = run(space_update, name="slow", etag=current.etag, changes=SpaceUpdate(quota="7M"))
        assert refused.name == "Refused" and "being changed by flow run" in (refused.message or "")
        assert child.wait(timeout=120) == 0  # it finishes its own update
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    assert read(config, "space", "slow").spec["quota"] == 5 * 1024**2
