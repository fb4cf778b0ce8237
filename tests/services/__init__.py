"""Private servers for tests: smbd and nfs-ganesha on 127.0.0.1, each in its own dirs.

Plain context managers (``smb_server``, ``nfs_server``) plus pytest fixtures in
``tests.services.fixtures``.  A server that cannot start raises ``ServiceError`` with
its log tail: tests that need one fail loudly, never skip.
"""

from tests.services.nfs import NfsExport, NfsServer, nfs_server
from tests.services.process import ServiceError
from tests.services.smb import SmbServer, SmbShare, smb_server

__all__ = [
    "NfsExport",
    "NfsServer",
    "ServiceError",
    "SmbServer",
    "SmbShare",
    "nfs_server",
    "smb_server",
]
