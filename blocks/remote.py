"""Remote endpoints for transfers: where an SMB share or NFS export is and how to log in.

A transfer definition names a saved block (``protocol: {name: smb, block: NAME}``) so
that passwords live in Prefect, not in definition files.
"""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from storeflow.models.transfer import NFSServer, SMBCredentials


class SMBRemote(Block):
    """An SMB share reached with smbprotocol."""

    _block_type_name = "Storeflow SMB Remote"
    _block_type_slug = "storeflow-smb-remote"
    _description = "An SMB share that transfers read from or write to."

    host: str = Field(description="Server name or address.")
    port: int = Field(445, gt=0, lt=65536)
    share: str = Field(description="Share name.")
    username: str
    password: SecretStr

    def credentials(self) -> SMBCredentials:
        return SMBCredentials(
            host=self.host,
            port=self.port,
            share=self.share,
            username=self.username,
            password=self.password,
        )


class NFSRemote(Block):
    """An NFSv4 export reached with libnfs, without a kernel mount."""

    _block_type_name = "Storeflow NFS Remote"
    _block_type_slug = "storeflow-nfs-remote"
    _description = "An NFSv4 export that transfers read from or write to."

    host: str = Field(description="Server name or address.")
    port: int = Field(2049, gt=0, lt=65536)
    export: str = Field(description="Export (pseudo) path, e.g. /share.")
    uid: int | None = Field(None, ge=0, description="AUTH_SYS uid to present.")
    gid: int | None = Field(None, ge=0, description="AUTH_SYS gid to present.")

    def server(self) -> NFSServer:
        return NFSServer(
            host=self.host, port=self.port, export=self.export, uid=self.uid, gid=self.gid
        )
