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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.reconcile import reconcile
from storeflow.flows.spaces import space_create, space_delete, space_update
from storeflow.flows.templates import template_create
from storeflow.models.schemas import SpaceSpec, SpaceUpdate, TemplateSpec
from storeflow.models.status import Status
from storeflow.tasks.reconcile import INTERRUPTED
from tests.lifecycle.conftest import exists, read, run, tree

LEASE = 2.0
ROOT = Path(__file__).resolve().parents[2]

# Wraps `module:function` so that the child stalls once it is reached, then runs the CLI.
CHILD = """
import importlib, os, sys, time
from pathlib import Path

marker, where, when = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
module_name, _, name = where.partition(":")
module = importlib.import_module(module_name)
original = getattr(module, name)

def stall(*args, **kwargs):
    if when == "before":
        marker.write_text("here")
        time.sleep(600)
    result = original(*args, **kwargs)
    marker.write_text("here")
    time.sleep(600)
    return result

setattr(module, name, stall)
from storeflow.cli.app import main
main(sys.argv[4:])
"""


@dataclass
class Killed:
    flow_run_id: str


def kill_during(tmp_path: Path, where: str, when: str, argv: list[str]) -> None:
    """Run `storeflow ARGV` in a child, SIGKILL it (and its process group) at `where`."""
    marker = tmp_path / f"marker-{time.monotonic_ns()}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), where, when, *argv],
        cwd=ROOT,
        env={**os.environ, "STOREFLOW_LOCK_LEASE": str(LEASE), "STOREFLOW_WARM": "off"},
        start_new_session=True,  # its ephemeral Prefect server dies with it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if child.poll() is not None:
                stderr = child.stderr.read().decode() if child.stderr else ""
                pytest.fail(f"the child ended before it reached {where}: {stderr[-2000:]}")
            assert time.monotonic() < deadline, f"the child never reached {where}"
            time.sleep(0.05)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
    time.sleep(LEASE + 0.5)  # the lease the killed run can no longer renew runs out


def state_type_of(flow_run_id: str) -> str:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(flow_run_id)).state
    assert state is not None
    return state.type.value


def leftovers(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.startswith("."))


@pytest.fixture
def lease(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("STOREFLOW_LOCK_LEASE", str(LEASE))
    yield


def big_tree(root: Path, files: int = 40) -> Path:
    (root / "data").mkdir(parents=True)
    for i in range(files):
        (root / "data" / f"f{i:03}.bin").write_bytes(os.urandom(1024))
    return root


def holder(config: StoreflowConfig, kind: str, name: str) -> str:
    owner = read(config, kind, name).lock_owner
    assert owner is not None, f"{kind} {name} is not held by the killed run"
    return owner


def test_space_create_killed_while_installing_its_template(
    config: StoreflowConfig, tmp_path: Path, lease: None
) -> None:
    assert run(template_create, spec=TemplateSpec(name="tpl", source=big_tree(tmp_path / "s")))
    kill_during(
        tmp_path, "shutil:copy2", "after", ["space", "create", "alpha", "--template", "tpl"]
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
        tmp_path, "shutil:copy2", "after", ["template", "create", "big", "--source", str(source)]
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
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
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
