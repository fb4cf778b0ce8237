"""Provider flows: provider-create, provider-update, provider-delete."""

from typing import Any

from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.models.names import ResourceName
from storeflow.models.replicas import ProviderSpec, ProviderUpdate
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.providers import ProviderBuilder, ProviderDeleter, ProviderUpdater


@lifecycle_flow("provider-create", "provider-create/{spec.name}")
def provider_create(spec: ProviderSpec, config: ConfigName = None) -> State[Any]:
    """Record a remote endpoint (local path, SMB share, NFS export) after checking it answers."""
    return run_operation(ProviderBuilder(resolve_config(config), spec))


@lifecycle_flow("provider-update", "provider-update/{name}")
def provider_update(
    name: ResourceName, changes: ProviderUpdate, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Change a provider's protocol, directory or block; the new endpoint must answer."""
    return run_operation(ProviderUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("provider-delete", "provider-delete/{name}")
def provider_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a provider; refused while replicas use it."""
    return run_operation(ProviderDeleter(resolve_config(config), name, etag))
