"""Populate/reconcile: bring the database up to date with the filesystem.

Directories nobody recorded are adopted; records whose directory is gone
become ERRORED (and ACTIVE again if it comes back); locks held by runs that
ended are released; what a crashed run left half-done is put back or
cleaned up. Each change is reported, so the flow can show it as a table.
"""

import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.names import NAME_PATTERN, check_name
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Status
from storeflow.tasks import fstools
from storeflow.tasks.lifecycle import lock_is_stale
from storeflow.tasks.spaces import observed_state

MISSING = "directory missing on the filesystem"
INTERRUPTED = "the run that held it ended before finishing"
ROLLED_BACK = "its create was interrupted before anything was made"
UNDONE = "its create was interrupted: what it made is undone"
# fstools.temp_sibling names: .NAME.PURPOSE-HEX
LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<purpose>copy|snapshot|deleting|replaced)-[0-9a-f]{12}")
RESTORABLE = {"deleting", "replaced"}  # trees moved aside, not yet removed


@dataclass(frozen=True)
class Change:
    kind: str
    name: str
    change: str
    detail: str = ""

    def row(self) -> dict[str, str]:
        return asdict(self)


# What a kind's `reconcile` names: it brings one area of the database up to date
# with the real system and reports each change.
Reconciler = Callable[[StoreflowConfig], list[Change]]

# A kind's way to put back what an interrupted run of it left outside the database
# (a Prefect deployment, a paused schedule): called with the record as the run left it.
Undo = Callable[[StoreflowConfig, ResourceView], None]


def settle_interrupted(
    config: StoreflowConfig,
    kind: str,
    undo_create: Undo | None = None,
    undo_change: Undo | None = None,
) -> list[Change]:
    """Records of `kind` whose run stopped without a word (its lease ran out, or Prefect
    says it ended) for kinds whose state lives in the database and Prefect, not in a
    directory: an interrupted create is undone (`undo_create`) and its row removed, so the
    name is free again; an interrupted update or delete is undone (`undo_change`, e.g. a
    paused schedule resumed) and the record released ERRORED, still there, for the next
    operation to retry."""
    changes: list[Change] = []
    with session_scope(config.database_url) as session:
        for row in repository.list_kind(session, kind):
            if not (row.lock_owner and lock_is_stale(row)):
                continue
            if row.last_action == "create":
                if undo_create is not None:
                    undo_create(config, row)
                repository.hard_delete(session, row.id)
                changes.append(Change(kind, row.name, "rolled back", UNDONE))
                continue
            if undo_change is not None:
                undo_change(config, row)
            repository.release(
                session, row.id, row.lock_owner, Status.ERRORED, message=INTERRUPTED, deleted=False
            )
            changes.append(Change(kind, row.name, "released", INTERRUPTED))
    return changes


@dataclass(frozen=True)
class Scope:
    """One directory whose subdirectories are resources of one kind."""

    kind: str
    base: Path
    scope: str = ""
    parent_id: int | None = None


def _scopes(session: Session, config: StoreflowConfig) -> list[Scope]:
    storage = config.storage
    scopes = [Scope("space", storage.spaces_dir), Scope("template", storage.templates_dir)]
    for space in repository.list_kind(session, "space"):
        base = storage.snapshots_dir / f"space-{space.id}"
        scopes.append(Scope("snapshot", base, scope=str(space.id), parent_id=space.id))
    return scopes


def _entries(base: Path) -> tuple[dict[str, Path], list[Path]]:
    """Resource directories below `base`, and the leftovers of interrupted runs."""
    dirs: dict[str, Path] = {}
    leftovers: list[Path] = []
    if not base.is_dir():
        return dirs, leftovers
    for path in sorted(base.iterdir()):
        if LEFTOVER.fullmatch(path.name):
            leftovers.append(path)
        elif path.is_dir() and not path.is_symlink() and NAME_PATTERN.fullmatch(path.name):
            dirs[path.name] = path
    return dirs, leftovers


def _release_stale(
    session: Session, scope: Scope, rows: list[ResourceView], changes: list[Change]
) -> None:
    """Free what stopped runs held (ERRORED); an interrupted create that left nothing
    under the resource's name is rolled back: its row goes, and the name is free."""
    for row in rows:
        if not (row.lock_owner and lock_is_stale(row)):
            continue
        if row.last_action == "create" and not os.path.lexists(scope.base / row.name):
            repository.hard_delete(session, row.id)
            changes.append(Change(row.kind, row.name, "rolled back", ROLLED_BACK))
            continue
        repository.release(
            session, row.id, row.lock_owner, Status.ERRORED, message=INTERRUPTED, deleted=False
        )
        changes.append(Change(row.kind, row.name, "released", INTERRUPTED))


def _clean_leftovers(
    scope: Scope,
    leftovers: list[Path],
    dirs: dict[str, Path],
    known: set[str],
    changes: list[Change],
) -> None:
    for path in leftovers:
        match = LEFTOVER.fullmatch(path.name)
        assert match is not None
        name, purpose = match["name"], match["purpose"]
        if purpose in RESTORABLE and name not in dirs and name in known:
            path.rename(scope.base / name)
            dirs[name] = scope.base / name
            changes.append(Change(scope.kind, name, "restored", f"from {path.name}"))
        else:
            fstools.remove_tree(path)
            changes.append(Change(scope.kind, name, "cleaned", f"removed {path.name}"))


def _observe(scope: Scope, path: Path) -> dict[str, object]:
    if scope.kind == "space":
        return observed_state(path)
    used = fstools.usage(path)
    return {"path": str(path), "usage_bytes": used.bytes, "files": used.files}


def reconcile_scope(session: Session, scope: Scope) -> list[Change]:
    changes: list[Change] = []
    rows = [r for r in repository.list_kind(session, scope.kind) if r.scope == scope.scope]
    _release_stale(session, scope, rows, changes)
    rows = [r for r in repository.list_kind(session, scope.kind) if r.scope == scope.scope]
    dirs, leftovers = _entries(scope.base)
    busy = any(r.lock_owner for r in rows)
    if leftovers and not busy:  # a live run may be using its staging trees
        _clean_leftovers(scope, leftovers, dirs, {r.name for r in rows}, changes)
    for row in rows:
        if row.lock_owner:
            continue
        path = dirs.get(row.name)
        if path is None and row.status is not Status.ERRORED:
            repository.update_observed(session, row.id, status=Status.ERRORED, message=MISSING)
            changes.append(Change(scope.kind, row.name, "errored", MISSING))
        elif path is not None and row.status is Status.ERRORED and row.status_message == MISSING:
            repository.update_observed(
                session, row.id, status=Status.ACTIVE, state=_observe(scope, path)
            )
            changes.append(Change(scope.kind, row.name, "recovered", "directory is back"))
        elif path is not None and scope.kind == "space":
            state = {**row.state, **_observe(scope, path)}
            state["template"], state["template_id"] = (
                row.state.get("template"),
                row.state.get("template_id"),
            )
            if state != row.state:
                repository.update_observed(session, row.id, state=state)
                changes.append(
                    Change(scope.kind, row.name, "measured", f"{state['usage_bytes']} bytes")
                )
    known = {r.name for r in rows}
    for name, path in dirs.items():
        if name in known:
            continue
        check_name(name)
        repository.insert(
            session,
            scope.kind,
            name,
            {"name": name, "adopted": True},
            status=Status.ACTIVE,
            scope=scope.scope,
            parent_id=scope.parent_id,
            state=_observe(scope, path),
        )
        changes.append(Change(scope.kind, name, "adopted", str(path)))
    return changes


def reconcile_directories(config: StoreflowConfig) -> list[Change]:
    """Reconcile every kind: spaces and templates first, then each space's snapshots."""
    config.storage.ensure_layout()
    changes: list[Change] = []
    for kind in ("space", "template"):
        with session_scope(config.database_url) as session:
            scope = next(s for s in _scopes(session, config) if s.kind == kind)
            changes += reconcile_scope(session, scope)
    with session_scope(config.database_url) as session:
        for scope in _scopes(session, config):
            if scope.kind == "snapshot":
                changes += reconcile_scope(session, scope)
    return changes
