"""pytest fixtures for the private servers; import them from tests/conftest.py:

    from tests.services.fixtures import nfs_service, smb_service  # noqa: F401

Each is session-scoped with one writable share/export rooted at a temp directory
(``.data``); tests work in their own subdirectory of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services.nfs import NfsExport, NfsServer, nfs_server
from tests.services.smb import SmbServer, SmbShare, smb_server


@dataclass(frozen=True)
class Served:
    """A running server and the local directory behind its share/export."""

    server: SmbServer | NfsServer
    data: Path
    #: Share name (SMB) or pseudo path (NFS).
    name: str


@pytest.fixture(scope="session")
def smb_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("smbd")
    data = root / "share"
    data.mkdir()
    with smb_server(root / "server", [SmbShare("data", data)]) as server:
        yield Served(server, data, "data")


@pytest.fixture(scope="session")
def nfs_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("ganesha")
    data = root / "export"
    data.mkdir()
    with nfs_server(root / "server", [NfsExport(1, data, "/data")]) as server:
        yield Served(server, data, "/data")
