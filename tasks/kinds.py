"""The resource kinds storeflow manages, and what each tells periodic hooks."""

from collections.abc import Callable
from typing import Any

from storeflow.blocks.config import StoreflowConfig
from storeflow.models.schemas import ResourceView
from storeflow.tasks import profiles, providers, replicas, snapshots, spaces, templates
from storeflow.tasks.exposers import cifs, nfs
from storeflow.tasks.exposers.reconcile import reconcile_exposers
from storeflow.tasks.reconcile import Change, reconcile_directories

PeriodicHookData = Callable[[list[ResourceView]], list[dict[str, Any]]]
Reconciler = Callable[[StoreflowConfig], list[Change]]

# Manila's per-driver `get_periodic_hook_data`, one per kind.
PERIODIC_HOOK_DATA: dict[str, PeriodicHookData] = {
    spaces.KIND: spaces.get_periodic_hook_data,
    snapshots.KIND: snapshots.get_periodic_hook_data,
    templates.KIND: templates.get_periodic_hook_data,
    cifs.KIND: cifs.get_periodic_hook_data,
    nfs.KIND: nfs.get_periodic_hook_data,
    providers.KIND: providers.get_periodic_hook_data,
    replicas.KIND: replicas.get_periodic_hook_data,
    profiles.KIND: profiles.get_periodic_hook_data,
}

# What the reconcile flow runs, in order: each brings one area of the
# database up to date with the real system and reports its changes.
RECONCILERS: list[Reconciler] = [reconcile_directories, reconcile_exposers]
