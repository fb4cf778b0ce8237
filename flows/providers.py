"""Provider flows: provider-create, provider-delete."""

from typing import Any

from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.models.names import ResourceName
from storeflow.models.replicas import ProviderSpec
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.providers import ProviderBuilder, ProviderDeleter


@lifecycle_flow("provider-create", "provider-create/{spec.name}")
def provider_create(spec: ProviderSpec, config: ConfigName = None) -> State[Any]:
    """Record a remote endpoint (local path, SMB share, NFS export) after checking it answers."""
    return run_operation(ProviderBuilder(resolve_config(config), spec))


@lifecycle_flow("provider-delete", "provider-delete/{name}")
def provider_delete(
    name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a provider; refused while replicas use it."""
    return run_operation(ProviderDeleter(resolve_config(config), name, etag))
