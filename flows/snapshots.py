"""Snapshot flows: snapshot-create, snapshot-delete."""

from typing import Any

from prefect.states import State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, CurrentEtag, lifecycle_flow
from storeflow.models.names import ResourceName
from storeflow.models.schemas import SnapshotSpec
from storeflow.tasks.lifecycle import run_operation
from storeflow.tasks.snapshots import SnapshotBuilder, SnapshotDeleter


@lifecycle_flow("snapshot-create", "snapshot-create/{spec.space}/{spec.name}")
def snapshot_create(spec: SnapshotSpec, config: ConfigName = None) -> State[Any]:
    """Take a read-only point-in-time snapshot of a space."""
    return run_operation(SnapshotBuilder(resolve_config(config), spec))


@lifecycle_flow("snapshot-delete", "snapshot-delete/{space}/{name}")
def snapshot_delete(
    space: ResourceName, name: ResourceName, etag: CurrentEtag = None, config: ConfigName = None
) -> State[Any]:
    """Delete a snapshot of a space."""
    return run_operation(SnapshotDeleter(resolve_config(config), space, name, etag))
