"""storeflow's configuration as plain pydantic models: no Prefect needed to read it.

blocks/*.py subclass these as Prefect Blocks (same fields, so the two never drift and
saved block documents keep loading); a flow run takes the Block, while the CLI's
read-only verbs build `Config()` from the environment without importing Prefect.
Defaults come from models/settings.py, read when a model is made, not at import.
"""

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from storeflow.models.names import Size
from storeflow.models.settings import (
    default_database_url,
    default_hook_drivers,
    default_storage_root,
)


class StorageSettings(BaseModel):
    """The filesystem storeflow manages: spaces, the template store, snapshots."""

    root: Path = Field(default_factory=default_storage_root, description="Filesystem root.")
    template_store: Path | None = Field(
        None, description="Template store; defaults to ROOT/templates."
    )
    template_max_size: Size = Field(
        10 * 1024**3, description="Largest template accepted (TemplateTooBig beyond it)."
    )

    @property
    def spaces_dir(self) -> Path:
        return self.root / "spaces"

    @property
    def templates_dir(self) -> Path:
        return self.template_store or self.root / "templates"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / ".snapshots"

    def ensure_layout(self) -> None:
        for path in (self.spaces_dir, self.templates_dir, self.snapshots_dir):
            path.mkdir(parents=True, exist_ok=True)


class MigrationMode(StrEnum):
    """When a share storeflow did not create becomes storeflow's (the seed's enum)."""

    AUTO = "auto"  # adopted when it is modified through storeflow
    NEVER = "never"  # never touched: updates and deletes through storeflow are refused


def _default_url() -> SecretStr:
    return SecretStr(default_database_url())


class DatabaseSettings(BaseModel):
    """SQLAlchemy URL of the resource database (SQLite file or PostgreSQL)."""

    # A secret: PostgreSQL URLs carry passwords.
    url: SecretStr = Field(default_factory=_default_url, description="SQLAlchemy database URL.")

    def url_value(self) -> str:
        return self.url.get_secret_value()


class HookSettings(BaseModel):
    """Hook drivers, Manila style: `hook_drivers=path.to:Class,path.to:Other`.

    Unlike Manila, hooks are enabled by default: naming a driver is the
    operator's way of asking for it to run.
    """

    hook_drivers: list[str] = Field(
        default_factory=default_hook_drivers,
        description="Driver classes as 'module.path:ClassName', run in this order.",
    )
    enable_pre_hooks: bool = True
    enable_post_hooks: bool = True
    enable_periodic_hooks: bool = True
    suppress_pre_hooks_errors: bool = False
    suppress_post_hooks_errors: bool = False
    periodic_hooks_interval: float = Field(300.0, gt=0, description="Seconds between runs.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="Further options the drivers read by name."
    )

    def safe_get(self, key: str) -> Any:
        """Manila's configuration lookup: a named option, or None."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return self.options.get(key)


class SambaSettings(BaseModel):
    """smbd's main smb.conf, the include file storeflow owns, and the tools that check
    and reload them. Tests point every path at a private smbd."""

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


class NfsBackend(StrEnum):
    KERNEL = "kernel"
    GANESHA = "ganesha"


class NfsSettings(BaseModel):
    """Where exports live and how they are made live. Tests point every path at a private
    ganesha or at an exportfs run in a private mount namespace."""

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


class Config(BaseModel):
    """Everything one flow run needs to know; `Config()` reads the environment's defaults.

    blocks/config.py's StoreflowConfig is this, as a Block whose parts are Blocks."""

    storage: StorageSettings = Field(default_factory=StorageSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    hooks: HookSettings = Field(default_factory=HookSettings)
    samba: SambaSettings = Field(default_factory=SambaSettings)
    nfs: NfsSettings = Field(default_factory=NfsSettings)

    @property
    def database_url(self) -> str:
        return self.database.url_value()
