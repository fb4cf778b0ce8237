"""Reconcile exposers: storeflow's files from its database, and the admin's shares recorded.

Under the backend's lock (so no operation is between its read and its commit):

- locks held by runs that have ended are released (ERRORED);
- the managed file is made to hold exactly the block each exposer last applied
  (recorded in its state by the run that applied it): a run killed between
  writing and reloading leaves a block nobody recorded, or lacks one somebody
  did; either is put right, checked and made live;
- shares and exports in the admin's files are recorded as unmanaged
  exposers (MigrationMode decides later whether storeflow may adopt them), and
  forgotten when they disappear.
"""

from pathlib import Path

from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.names import check_name
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Status
from storeflow.tasks.exposers.backend import Backend, Foreign
from storeflow.tasks.exposers.blocks import ManagedFileError, parse_blocks, render_blocks
from storeflow.tasks.exposers.cifs import CifsExposer
from storeflow.tasks.exposers.configfile import ConfigEdit, leftover_temp_files
from storeflow.tasks.exposers.nfs import NfsExposer
from storeflow.tasks.exposers.operations import is_managed
from storeflow.tasks.lifecycle import lock_is_stale
from storeflow.tasks.reconcile import INTERRUPTED, UNDONE, Change
from storeflow.tasks.spaces import space_path


def backends(config: StoreflowConfig) -> list[Backend]:
    return [CifsExposer.make_backend(config), NfsExposer.make_backend(config)]


def reconcile_exposers(config: StoreflowConfig) -> list[Change]:
    """Every backend the server is set up to use (its main file includes storeflow's)."""
    changes: list[Change] = []
    for backend in backends(config):
        if backend.in_use():
            with backend.lock() as edit, session_scope(config.database_url) as session:
                changes += reconcile_backend(config, backend, edit, session)
    return changes


def reconcile_backend(
    config: StoreflowConfig, backend: Backend, edit: ConfigEdit, session: Session
) -> list[Change]:
    changes: list[Change] = []
    for leftover in leftover_temp_files(backend.managed_path):
        leftover.unlink(missing_ok=True)
        changes.append(Change(backend.kind, "-", "cleaned", f"removed {leftover.name}"))
    for row in repository.list_kind(session, backend.kind):
        if row.lock_owner and lock_is_stale(row):
            changes.append(_settle_interrupted(session, backend, row))
    rows = repository.list_kind(session, backend.kind)
    changes += _rewrite_managed(backend, edit, rows)
    changes += _record_foreign(config, backend, session, rows)
    return changes


def _settle_interrupted(session: Session, backend: Backend, row: ResourceView) -> Change:
    """A run killed mid-operation: a create that never recorded its block is rolled back
    (its row goes; _rewrite_managed then takes its block out of the file if it got
    there), anything else is released ERRORED with its last applied block kept."""
    if row.last_action == "create" and not row.state.get("block"):
        repository.hard_delete(session, row.id)
        return Change(backend.kind, row.name, "rolled back", UNDONE)
    repository.release(
        session, row.id, row.lock_owner or "", Status.ERRORED, message=INTERRUPTED, deleted=False
    )
    return Change(backend.kind, row.name, "released", INTERRUPTED)


def _rewrite_managed(backend: Backend, edit: ConfigEdit, rows: list[ResourceView]) -> list[Change]:
    wanted = {
        row.name: row.state["block"] for row in rows if is_managed(row) and row.state.get("block")
    }
    text = edit.read(backend.managed_path)
    try:
        current = parse_blocks(text)
        detail = ""
    except ManagedFileError as exc:
        current, detail = {}, f"unreadable ({exc}): rewritten"
    if current == wanted and not detail:
        return []
    new_text = render_blocks(backend.what, wanted)
    backend.validate(new_text)
    edit.write(backend.managed_path, new_text)
    dropped = [name for name in current if name not in wanted]
    try:
        backend.check_config()
        backend.activate(dropped)
    except Exception:
        if edit.restore():
            backend.activate([])
        raise
    changes = [Change(backend.kind, n, "removed", "no run recorded it") for n in dropped]
    changes += [
        Change(backend.kind, n, "restored", "as last applied")
        for n, block in wanted.items()
        if current.get(n) != block
    ]
    if detail:
        changes.append(Change(backend.kind, "-", "rewritten", detail))
    return changes


def _space_of(config: StoreflowConfig, session: Session, path: Path | None) -> int | None:
    if path is None:
        return None
    for space in repository.list_kind(session, "space"):
        if not space.deleted and space_path(config, space.name).resolve() == path.resolve():
            return space.id
    return None


def _record_foreign(
    config: StoreflowConfig, backend: Backend, session: Session, rows: list[ResourceView]
) -> list[Change]:
    changes: list[Change] = []
    found = {entry.name: entry for entry in backend.foreign()}
    known = {row.name.lower(): row for row in rows}
    for row in rows:
        if not is_managed(row) and row.name not in found and not row.lock_owner:
            repository.hard_delete(session, row.id)
            changes.append(Change(backend.kind, row.name, "forgotten", "gone from admin's files"))
    for name, entry in found.items():
        existing = known.get(name.lower())
        if existing is not None:
            if is_managed(existing):
                changes.append(Change(backend.kind, name, "conflict", f"also in {entry.source}"))
            continue
        try:
            check_name(name)
        except ValueError:
            changes.append(Change(backend.kind, name, "ignored", f"bad name, in {entry.source}"))
            continue
        repository.insert(
            session,
            backend.kind,
            name,
            {"name": name},
            status=Status.ACTIVE,
            parent_id=_space_of(config, session, entry.path),
            state=_foreign_state(entry),
        )
        changes.append(Change(backend.kind, name, "found", f"unmanaged, in {entry.source}"))
    return changes


def _foreign_state(entry: Foreign) -> dict[str, object]:
    return {
        "managed": False,
        "source": str(entry.source),
        "path": str(entry.path) if entry.path else None,
        "options": {k: v for k, v in entry.options.items() if k != "line"},
    }
