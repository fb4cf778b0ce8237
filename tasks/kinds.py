"""The resource kinds: one record per kind, and the registry everything reads.

The CLI's verbs, `storeflow schema`, reconcile, the periodic hooks and the
deployments in prefect.yaml are all built from these records.  A record names its
heavy parts (the operations module with Prefect tasks, the flows module) by import
path, so reading the registry imports no Prefect: `storeflow space list` stays fast.

A new kind is one module (its spec, operations and flows) plus one `register(...)`
call, or an entry point in the `storeflow.kinds` group naming its `ResourceKind`.
"""

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from storeflow.models.errors import InvalidInput
from storeflow.models.names import format_size
from storeflow.models.schemas import ResourceView

ENTRY_POINT_GROUP = "storeflow.kinds"

PeriodicHookData = Callable[[list[ResourceView]], list[dict[str, Any]]]


def _attribute(path: str) -> Any:
    """'package.module:name' -> the object it names."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _model(model: type[BaseModel] | str) -> type[BaseModel]:
    found: type[BaseModel] = _attribute(model) if isinstance(model, str) else model
    return found


@dataclass(frozen=True)
class ResourceKind:
    """What storeflow knows of one kind of resource.

    name: the kind as stored and shown (`space`, `cifs-exposer`).
    spec: the pydantic model a create takes (its JSON Schema is `storeflow schema`), or
        its 'module:Class' path, imported when first used (`spec_model`): a listing
        then never imports the models of other kinds.
    operations: the module with the kind's Builder/Updater/Deleter and its
        `get_periodic_hook_data(resources)` (Manila's per-driver periodic data).
    flows: the module with one flow per action, named `<kind>_<action>`
        (`space_create`); each is deployed as `<kind>-<action>`.
    actions: the flows the kind has, in the order the CLI and prefect.yaml list them.
    columns: what `list` shows beside name, status and etag.
    parent: the kind this one lives inside (snapshots live in a space).
    reconcile: 'module:function' bringing this kind's records up to date with the real
        system (several kinds may share one).
    changes: the model an update takes (`storeflow KIND update --changes` checks it),
        or its path (`changes_model`).
    command: the CLI group holding the kind's verbs (default: the kind's name); kinds
        sharing a hand-written group (`exposer cifs|nfs ...`) name it.
    verb_help: the CLI's help of a verb built from this record, where the default
        ("List spaces.", "Show one space.", "Delete a space.") says too little.
    """

    name: str
    help: str
    spec: type[BaseModel] | str
    operations: str
    flows: str
    actions: tuple[str, ...] = ("create", "update", "delete")
    columns: tuple[str, ...] = ("message",)
    parent: str | None = None
    reconcile: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    changes: type[BaseModel] | str | None = None
    command: str | None = None
    verb_help: dict[str, str] = field(default_factory=dict)

    @property
    def identifier(self) -> str:
        """The kind as a Python name: `cifs_exposer`."""
        return self.name.replace("-", "_")

    def deployment(self, action: str) -> str:
        """The deployment (and flow) name of an action: `space-create`."""
        return f"{self.name}-{action}"

    def flow_path(self, action: str) -> str:
        """'module:function' of an action's flow."""
        if action not in self.actions:
            raise InvalidInput("action", f"{self.name} has no {action!r} (only {self.actions})")
        return f"{self.flows}:{self.identifier}_{action}"

    def entrypoint(self, action: str) -> str:
        """The deployment entrypoint, as prefect.yaml writes it: `flows/spaces.py:space_create`."""
        module, _, function = self.flow_path(action).partition(":")
        parts = module.split(".")
        if parts[0] == "storeflow":
            parts = parts[1:]
        return f"{'/'.join(parts)}.py:{function}"

    def flow(self, action: str) -> Any:
        """The action's Prefect flow (imports the flows module, and so Prefect)."""
        return _attribute(self.flow_path(action))

    @property
    def spec_model(self) -> type[BaseModel]:
        """The spec model (imported now when the record names it by path)."""
        return _model(self.spec)

    @property
    def changes_model(self) -> type[BaseModel] | None:
        """The model an update takes, if the kind has one."""
        return None if self.changes is None else _model(self.changes)

    def periodic_hook_data(self, resources: list[ResourceView]) -> list[dict[str, Any]]:
        get_data: PeriodicHookData = _attribute(f"{self.operations}:get_periodic_hook_data")
        return get_data(resources)


BUILTIN: tuple[ResourceKind, ...] = (
    ResourceKind(
        name="space",
        help="Spaces: directory trees with a quota.",
        spec="storeflow.models.schemas:SpaceSpec",
        operations="storeflow.tasks.spaces",
        flows="storeflow.flows.spaces",
        columns=("quota", "used", "template", "message"),
        changes="storeflow.models.schemas:SpaceUpdate",
        reconcile="storeflow.tasks.reconcile:reconcile_directories",
    ),
    ResourceKind(
        name="snapshot",
        help="Read-only snapshots of spaces.",
        spec="storeflow.models.schemas:SnapshotSpec",
        operations="storeflow.tasks.snapshots",
        flows="storeflow.flows.snapshots",
        actions=("create", "delete"),
        columns=("mode", "files", "message"),
        parent="space",
        reconcile="storeflow.tasks.reconcile:reconcile_directories",
    ),
    ResourceKind(
        name="template",
        help="Templates installed into new spaces.",
        spec="storeflow.models.schemas:TemplateSpec",
        operations="storeflow.tasks.templates",
        flows="storeflow.flows.templates",
        columns=("used", "files", "message"),
        changes="storeflow.models.schemas:TemplateUpdate",
        verb_help={"delete": "Delete a template from the store."},
        reconcile="storeflow.tasks.reconcile:reconcile_directories",
    ),
    ResourceKind(
        name="cifs-exposer",
        help="CIFS (Samba) shares of spaces.",
        spec="storeflow.models.exposers:CifsExposerSpec",
        changes="storeflow.models.exposers:CifsExposerUpdate",
        command="exposer",
        operations="storeflow.tasks.exposers.cifs",
        flows="storeflow.flows.exposers",
        actions=("create", "update", "delete", "allow", "deny"),
        columns=("space", "message"),
        reconcile="storeflow.tasks.exposers.reconcile:reconcile_exposers",
    ),
    ResourceKind(
        name="nfs-exposer",
        help="NFS exports of spaces.",
        spec="storeflow.models.exposers:NfsExposerSpec",
        changes="storeflow.models.exposers:NfsExposerUpdate",
        command="exposer",
        operations="storeflow.tasks.exposers.nfs",
        flows="storeflow.flows.exposers",
        actions=("create", "update", "delete", "allow", "deny"),
        columns=("space", "message"),
        reconcile="storeflow.tasks.exposers.reconcile:reconcile_exposers",
    ),
    ResourceKind(
        name="provider",
        help="Remote endpoints replicas and profiles move data to.",
        spec="storeflow.models.replicas:ProviderSpec",
        operations="storeflow.tasks.providers",
        flows="storeflow.flows.providers",
        reconcile="storeflow.tasks.providers:reconcile_providers",
        actions=("create", "update", "delete"),
        changes="storeflow.models.replicas:ProviderUpdate",
        columns=("protocol", "directory", "block", "message"),
        verb_help={"delete": "Delete a provider (refused while replicas use it)."},
    ),
    ResourceKind(
        name="replica",
        help="Scheduled copies of a space to a provider.",
        spec="storeflow.models.replicas:ReplicaSpec",
        operations="storeflow.tasks.replicas",
        flows="storeflow.flows.replicas",
        reconcile="storeflow.tasks.replicas:reconcile_replicas",
        actions=("create", "update", "delete", "sync"),
        changes="storeflow.models.replicas:ReplicaUpdate",
        columns=("space", "provider", "direction", "schedule", "last_run", "message"),
        verb_help={
            "delete": "Delete a replica and its schedule (the data on both sides stays).",
            "show": "Show one replica (its last sync is in state.last).",
        },
    ),
    ResourceKind(
        name="profile",
        help="Tiering profiles: move cold files of a space to a provider.",
        spec="storeflow.models.replicas:ProfileSpec",
        operations="storeflow.tasks.profiles",
        flows="storeflow.flows.profiles",
        reconcile="storeflow.tasks.profiles:reconcile_profiles",
        actions=("create", "update", "delete", "tier"),
        changes="storeflow.models.replicas:ProfileUpdate",
        columns=("pools", "schedule", "last_run", "message"),
        verb_help={
            "delete": "Delete a profile and its schedule (the pools and their files stay).",
            "show": "Show one profile (its last pass is in state.last).",
        },
    ),
)

_registered: dict[str, ResourceKind] = {}


def register(kind: ResourceKind) -> ResourceKind:
    """Add a kind (e.g. from a plugin's module); a name may be registered once."""
    if kind.name in {k.name for k in _builtin_and_installed()} or kind.name in _registered:
        existing = _registered.get(kind.name)
        if existing == kind:
            return kind
        raise InvalidInput("kind", f"{kind.name!r} is already registered")
    _registered[kind.name] = kind
    return kind


@cache
def _builtin_and_installed() -> tuple[ResourceKind, ...]:
    installed = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        kind = entry.load()
        if not isinstance(kind, ResourceKind):
            raise TypeError(f"entry point {entry.name} ({entry.value}) is not a ResourceKind")
        installed.append(kind)
    return BUILTIN + tuple(installed)


def all_kinds() -> Iterator[ResourceKind]:
    """Every kind: storeflow's own, installed ones, then registered ones."""
    yield from _builtin_and_installed()
    yield from _registered.values()


def get(name: str) -> ResourceKind:
    for kind in all_kinds():
        if kind.name == name:
            return kind
    names = ", ".join(k.name for k in all_kinds())
    raise InvalidInput("kind", f"{name!r} is not one of {names}")


def reconcilers() -> list[str]:
    """'module:function' of each reconciler, once each, in registry order."""
    seen: list[str] = []
    for kind in all_kinds():
        if kind.reconcile and kind.reconcile not in seen:
            seen.append(kind.reconcile)
    return seen


def reconciler(path: str) -> Callable[..., Any]:
    return _attribute(path)


# -- how a resource shows in a table (the CLI's lists, the UI's inventory) -----------


def cells(row: ResourceView, columns: list[str]) -> list[str]:
    """Table cells; a column not named here shows the spec (or else state) field of its name."""
    values = {
        "quota": format_size(row.spec.get("quota") or 0) if row.spec.get("quota") else "-",
        "used": format_size(row.state.get("usage_bytes") or 0),
        "files": str(row.state.get("files", "")),
        "template": row.state.get("template") or "-",
        "mode": row.state.get("mode") or "-",
        "pools": " -> ".join(str(p.get("name")) for p in row.spec.get("pools") or []) or "-",
        "schedule": _schedule(row.spec.get("schedule")),
        "message": row.status_message or "",
    }
    return [values[c] if c in values else _field(row, c) for c in columns]


def _schedule(schedule: Any) -> str:
    if not isinstance(schedule, dict):
        return "-"
    if schedule.get("interval") is not None:
        return f"every {schedule['interval']}s"
    return f"cron {schedule.get('cron')}" if schedule.get("cron") else "-"


def _field(row: ResourceView, column: str) -> str:
    value = row.spec.get(column, row.state.get(column))
    return "-" if value is None or value == "" else str(value)
