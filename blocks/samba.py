"""Where the Samba server storeflow manages keeps its configuration, and how to drive it."""

from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from storeflow.models.exposers import MigrationMode


class SambaBlock(Block):
    """smbd's main smb.conf, the include file storeflow owns, and the tools that check
    and reload them. Tests point every path at a private smbd."""

    _block_type_name = "Storeflow Samba"
    _block_type_slug = "storeflow-samba"
    _description = "The Samba server whose shares storeflow's CIFS exposers manage."

    config_path: Path = Field(
        Path("/etc/samba/smb.conf"),
        description="smbd's main configuration; it must `include` the include_path.",
    )
    include_path: Path = Field(
        Path("/etc/samba/storeflow.conf"),
        description="The file storeflow owns: one section per CIFS exposer.",
    )
    smbcontrol: Path = Field(Path("/usr/bin/smbcontrol"), description="smbcontrol binary.")
    testparm: Path = Field(Path("/usr/bin/testparm"), description="testparm binary.")
    host: str = Field("127.0.0.1", description="Where clients reach smbd (shown in show/hooks).")
    port: int = Field(445, description="smbd's port (tests run smbd on a private port).")
    migration_mode: MigrationMode = Field(
        MigrationMode.NEVER,
        description="auto: a share storeflow did not create becomes storeflow's when it is "
        "modified through storeflow; never: such shares are left alone.",
    )
    allow_guest: bool = Field(False, description="Whether a share may set guest_ok.")
    command_timeout: float = Field(60.0, description="Seconds testparm/smbcontrol may take.")
