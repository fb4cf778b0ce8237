"""Space flows: space-create, space-update, space-delete."""

from typing import Any

from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.models.names import ResourceName
from storeflow.models.schemas import SpaceSpec, SpaceUpdate
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.spaces import SpaceBuilder, SpaceDeleter, SpaceUpdater


@lifecycle_flow("space-create", "space-create/{spec.name}")
def space_create(spec: SpaceSpec, config: ConfigName = None) -> State[Any]:
    """Create a space: its directory, quota, and the template it starts from."""
    return run_operation(SpaceBuilder(resolve_config(config), spec))


@lifecycle_flow("space-update", "space-update/{name}")
def space_update(
    name: ResourceName, changes: SpaceUpdate, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Rename, resize or uninstall the template of a space (etag: as you last read it)."""
    return run_operation(SpaceUpdater(resolve_config(config), name, etag, changes))


@lifecycle_flow("space-delete", "space-delete/{name}")
def space_delete(
    name: ResourceName, etag: CurrentEtag = None, force: bool = False, config: ConfigName = None
) -> State[Any]:
    """Delete a space; one holding data needs force=True."""
    return run_operation(SpaceDeleter(resolve_config(config), name, etag, force))
