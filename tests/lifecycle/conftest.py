"""Helpers for lifecycle tests: run a flow in-process, read a resource back; kill -9 an
operation at a chosen point (test_kill.py, test_kill_kinds.py)."""

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.states import State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.errors import NotFound
from storeflow.models.schemas import ResourceView
from tests.killing import kill_at_marker


@pytest.fixture
def config(storeflow_home: Path) -> StoreflowConfig:
    return resolve_config()


def run(flow: Any, **params: Any) -> State[Any]:
    """Run a flow here and return its final state (never raises for a failed run)."""
    return flow(**params, return_state=True)


def read(config: StoreflowConfig, kind: str, name: str, space: str | None = None) -> ResourceView:
    with session_scope(config.database_url) as session:
        scope = str(repository.find(session, "space", space).id) if space else ""
        return repository.find(session, kind, name, scope)


def exists(config: StoreflowConfig, kind: str, name: str, space: str | None = None) -> bool:
    try:
        read(config, kind, name, space)
    except NotFound:
        return False
    return True


def tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for directories): to compare trees."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
        if not p.is_symlink()
    }


@pytest.fixture
def sample_tree(tmp_path: Path) -> Path:
    src = tmp_path / "sample"
    (src / "docs").mkdir(parents=True)
    (src / "README").write_text("hello\n")
    (src / "docs" / "guide.txt").write_text("guide\n" * 10)
    return src


# -- kill -9 mid-operation ------------------------------------------------------------

LEASE = 2.0
ROOT = Path(__file__).resolve().parents[2]

# Wraps `module:function` (or `module:Class.method`) so that the child stalls once it
# is reached (before the call, or after it returned), then runs the CLI.
CHILD = """
import importlib, os, sys, time
from pathlib import Path

marker, where, when = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
module_name, _, name = where.partition(":")
owner = importlib.import_module(module_name)
*path, attribute = name.split(".")  # a function, or a method: module:Class.method
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, attribute)

def stall(*args, **kwargs):
    if when == "before":
        marker.write_text("here")
        time.sleep(600)
    result = original(*args, **kwargs)
    marker.write_text("here")
    time.sleep(600)
    return result

setattr(owner, attribute, stall)
from storeflow.cli.app import main
main(sys.argv[4:])
"""


def kill_during(tmp_path: Path, where: str, when: str, argv: list[str]) -> None:
    """Run `storeflow ARGV` in a child, SIGKILL it (and its process group) at `where`."""
    marker = tmp_path / f"marker-{time.monotonic_ns()}"
    kill_at_marker(
        [sys.executable, "-c", CHILD, str(marker), where, when, *argv],
        marker,
        {**os.environ, "STOREFLOW_LOCK_LEASE": str(LEASE), "STOREFLOW_WARM": "off"},
        ROOT,
        where,
    )
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


def holder(config: StoreflowConfig, kind: str, name: str, space: str | None = None) -> str:
    owner = read(config, kind, name, space).lock_owner
    assert owner is not None, f"{kind} {name} is not held by the killed run"
    return owner
