"""Fixtures for transfer tests: real directories and the private smbd/ganesha."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.services.fixtures import Served, nfs_service, smb_service

__all__ = ["nfs_service", "smb_service"]

_counter = itertools.count()

Definition = dict[str, Any]


def local_def(src: Path, dests: list[Path] | Path, **source: Any) -> Definition:
    """A local -> local definition; extra keyword arguments go into ``source``."""
    dest_list = dests if isinstance(dests, list) else [dests]
    return {
        "type": "transfer",
        "source": {
            "directory": str(src),
            "fileRegex": ".*",
            "protocol": {"name": "local"},
            **source,
        },
        "destination": [{"directory": str(d), "protocol": {"name": "local"}} for d in dest_list],
    }


@pytest.fixture
def dirs(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str) -> Path:
        path = tmp_path / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    return make


@pytest.fixture
def smb_protocol(smb_service: Served) -> dict[str, Any]:
    server = smb_service.server
    return {
        "name": "smb",
        "credentials": {
            "host": server.host,
            "port": server.port,
            "share": smb_service.name,
            "username": server.username,  # type: ignore[union-attr]
            "password": server.password,  # type: ignore[union-attr]
        },
    }


@pytest.fixture
def nfs_protocol(nfs_service: Served) -> dict[str, Any]:
    server = nfs_service.server
    return {
        "name": "nfs",
        "server": {"host": server.host, "port": server.port, "export": nfs_service.name},
    }


@pytest.fixture
def unique() -> str:
    """A fresh directory name inside a shared share/export."""
    return f"t{next(_counter)}"
