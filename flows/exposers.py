"""Exposer flows: cifs-exposer-* and nfs-exposer-* create, update, delete, allow, deny."""

from typing import Any

from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.models.exposers import (
    CifsAccessRule,
    CifsExposerSpec,
    CifsExposerUpdate,
    Host,
    NfsClientRule,
    NfsExposerSpec,
    NfsExposerUpdate,
    Principal,
)
from storeflow.models.names import ResourceName
from storeflow.tasks.exposers import cifs, nfs
from storeflow.tasks.lifecycle import run_operation

# -- CIFS ---------------------------------------------------------------------------------


@lifecycle_flow("cifs-exposer-create", "cifs-exposer-create/{spec.name}")
def cifs_exposer_create(spec: CifsExposerSpec, config: ConfigName = None) -> State[Any]:
    """Share a space over SMB: a section in storeflow's Samba include file, made live."""
    return run_operation(cifs.CifsExposerBuilder(resolve_config(config), spec))


@lifecycle_flow("cifs-exposer-update", "cifs-exposer-update/{name}")
def cifs_exposer_update(
    name: ResourceName,
    changes: CifsExposerUpdate,
    etag: CurrentEtag = None,
    config: ConfigName = None,
) -> State[Any]:
    """Change a share's parameters or name (etag: as you last read it)."""
    return run_operation(cifs.CifsExposerUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("cifs-exposer-delete", "cifs-exposer-delete/{name}")
def cifs_exposer_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Remove a share and close its open sessions."""
    return run_operation(cifs.CifsExposerDeleter(resolve_config(config), name, etag))


@lifecycle_flow("cifs-exposer-allow", "cifs-exposer-allow/{name}/{rule.to}")
def cifs_exposer_allow(
    name: ResourceName, rule: CifsAccessRule, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Allow a user or @group on a share, ro or rw (Manila's allow_access)."""
    return run_operation(cifs.CifsAccessAllow(resolve_config(config), name, etag, rule))


@lifecycle_flow("cifs-exposer-deny", "cifs-exposer-deny/{name}/{to}")
def cifs_exposer_deny(
    name: ResourceName, to: Principal, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Refuse a user or @group on a share (Manila's deny_access)."""
    return run_operation(cifs.CifsAccessDeny(resolve_config(config), name, etag, to))


# -- NFS ----------------------------------------------------------------------------------


@lifecycle_flow("nfs-exposer-create", "nfs-exposer-create/{spec.name}")
def nfs_exposer_create(spec: NfsExposerSpec, config: ConfigName = None) -> State[Any]:
    """Export a space over NFS (kernel exportfs or nfs-ganesha, as the NFS block says)."""
    return run_operation(nfs.NfsExposerBuilder(resolve_config(config), spec))


@lifecycle_flow("nfs-exposer-update", "nfs-exposer-update/{name}")
def nfs_exposer_update(
    name: ResourceName,
    changes: NfsExposerUpdate,
    etag: CurrentEtag = None,
    config: ConfigName = None,
) -> State[Any]:
    """Change an export's clients, pseudo path or name."""
    return run_operation(nfs.NfsExposerUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("nfs-exposer-delete", "nfs-exposer-delete/{name}")
def nfs_exposer_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Remove an export."""
    return run_operation(nfs.NfsExposerDeleter(resolve_config(config), name, etag))


@lifecycle_flow("nfs-exposer-allow", "nfs-exposer-allow/{name}/{rule.client}")
def nfs_exposer_allow(
    name: ResourceName, rule: NfsClientRule, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Allow a client, ro or rw with its options (Manila's allow_access)."""
    return run_operation(nfs.NfsAccessAllow(resolve_config(config), name, etag, rule))


@lifecycle_flow("nfs-exposer-deny", "nfs-exposer-deny/{name}/{client}")
def nfs_exposer_deny(
    name: ResourceName, client: Host, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Remove a client's access (Manila's deny_access)."""
    return run_operation(nfs.NfsAccessDeny(resolve_config(config), name, etag, client))
