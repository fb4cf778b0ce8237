"""The resource kinds storeflow manages, and what each tells periodic hooks."""

from collections.abc import Callable
from typing import Any

from models.schemas import ResourceView
from tasks import snapshots, spaces, templates

PeriodicHookData = Callable[[list[ResourceView]], list[dict[str, Any]]]

# Manila's per-driver `get_periodic_hook_data`, one per kind.
PERIODIC_HOOK_DATA: dict[str, PeriodicHookData] = {
    spaces.KIND: spaces.get_periodic_hook_data,
    snapshots.KIND: snapshots.get_periodic_hook_data,
    templates.KIND: templates.get_periodic_hook_data,
}
