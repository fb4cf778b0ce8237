"""Fixtures for exposer tests: a private smbd whose smb.conf includes storeflow's file,
a private exportfs, a private nfs-ganesha; a StoreflowConfig saved as a block per test."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prefect.states import State

from storeflow.blocks.config import StoreflowConfig
from storeflow.blocks.nfs import NfsBackend, NfsBlock
from storeflow.blocks.samba import SambaBlock
from storeflow.flows.spaces import space_create
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.exposers import MigrationMode
from storeflow.models.schemas import ResourceView, SpaceSpec
from tests.services.smb import SmbServer, SmbShare, smb_server


@dataclass
class Setup:
    """The config a test's flows run with (saved as block `name`)."""

    config: StoreflowConfig
    name: str

    def run(self, flow: Any, **params: Any) -> State[Any]:
        return flow(**params, config=self.name, return_state=True)

    def space(self, name: str) -> Path:
        state = self.run(space_create, spec=SpaceSpec(name=name))
        assert state.name == "Active", state.message
        return self.config.storage.spaces_dir / name

    def read(self, kind: str, name: str) -> ResourceView:
        with session_scope(self.config.database_url) as session:
            return repository.find(session, kind, name)

    def rows(self) -> list[dict[str, Any]]:
        """Every resource row, to compare the database before and after a refusal."""
        with session_scope(self.config.database_url) as session:
            return [
                r.model_dump(mode="json")
                for kind in ("space", "cifs-exposer", "nfs-exposer")
                for r in repository.list_kind(session, kind)
            ]


def save(config: StoreflowConfig) -> Setup:
    name = f"exposers-{uuid.uuid4().hex[:10]}"
    config.save(name)
    return Setup(config, name)


def digest(*paths: Path) -> dict[str, str | None]:
    """Each file's sha256 (None if absent): 'byte-identical' in one comparison."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None for p in paths
    }


@pytest.fixture
def legacy_dir(tmp_path: Path) -> Path:
    path = tmp_path / "legacy"
    path.mkdir()
    return path


def start_samba(root: Path, shares: list[SmbShare]) -> Iterator[SmbServer]:
    root.mkdir(parents=True)
    include = root / "storeflow.conf"
    include.write_text("")
    with smb_server(root, shares, global_options={"include": str(include)}) as server:
        yield server


@pytest.fixture
def samba(tmp_path: Path) -> Iterator[SmbServer]:
    yield from start_samba(tmp_path / "smbd", [])


@pytest.fixture
def cifs(samba: SmbServer, storeflow_home: Path) -> Setup:
    return save(samba_config(samba))


def samba_config(server: SmbServer, mode: MigrationMode = MigrationMode.NEVER) -> StoreflowConfig:
    return StoreflowConfig(
        samba=SambaBlock(
            config_path=server.conf,
            include_path=server.root / "storeflow.conf",
            port=server.port,
            migration_mode=mode,
        )
    )


def nfs_config(**nfs: Any) -> StoreflowConfig:
    return StoreflowConfig(nfs=NfsBlock(**nfs))


__all__ = ["NfsBackend", "Setup", "digest", "nfs_config", "samba_config", "save", "start_samba"]
