"""The NFS server storeflow manages: kernel NFS (exportfs) or nfs-ganesha."""

from enum import StrEnum
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from storeflow.models.exposers import MigrationMode


class NfsBackend(StrEnum):
    KERNEL = "kernel"
    GANESHA = "ganesha"


class NfsBlock(Block):
    """Where exports live and how they are made live. Tests point every path at a private
    ganesha or at an exportfs run in a private mount namespace."""

    _block_type_name = "Storeflow NFS"
    _block_type_slug = "storeflow-nfs"
    _description = "The NFS server whose exports storeflow's NFS exposers manage."

    backend: NfsBackend = Field(NfsBackend.KERNEL, description="kernel (exportfs) or ganesha.")
    exports_path: Path = Field(
        Path("/etc/exports.d/storeflow.exports"),
        description="kernel: the exports file storeflow owns (exportfs reads exports.d).",
    )
    main_exports: list[Path] = Field(
        default_factory=lambda: [Path("/etc/exports")],
        description="kernel: exports files the admin owns (searched for unmanaged exports; "
        "other *.exports files beside exports_path are searched too).",
    )
    exportfs: Path = Field(Path("/usr/sbin/exportfs"), description="exportfs binary.")
    ganesha_config: Path = Field(
        Path("/etc/ganesha/ganesha.conf"),
        description="ganesha: the main configuration; it must %include ganesha_exports_path.",
    )
    ganesha_exports_path: Path = Field(
        Path("/etc/ganesha/storeflow-exports.conf"),
        description="ganesha: the file storeflow owns: one EXPORT block per NFS exposer.",
    )
    ganesha_pidfile: Path = Field(
        Path("/run/ganesha/ganesha.pid"), description="ganesha: pid file (SIGHUP reloads)."
    )
    first_export_id: int = Field(100, ge=1, le=65000, description="ganesha: lowest Export_Id.")
    host: str = Field("127.0.0.1", description="Where clients reach the server.")
    port: int = Field(2049, description="The server's NFS port (tests use a private one).")
    allow_no_root_squash: bool = Field(False, description="Whether a client may be no_root_squash.")
    allow_everyone: bool = Field(False, description="Whether a client may be '*'.")
    migration_mode: MigrationMode = Field(
        MigrationMode.NEVER,
        description="auto: an export storeflow did not create becomes storeflow's when it is "
        "modified through storeflow; never: such exports are left alone.",
    )
    command_timeout: float = Field(60.0, description="Seconds exportfs may take.")

    @property
    def managed_path(self) -> Path:
        return (
            self.ganesha_exports_path if self.backend is NfsBackend.GANESHA else self.exports_path
        )
