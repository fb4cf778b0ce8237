"""Helpers for lifecycle tests: run a flow in-process, read a resource back."""

from pathlib import Path
from typing import Any

import pytest
from prefect.states import State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.errors import NotFound
from storeflow.models.schemas import ResourceView


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
