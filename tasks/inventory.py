"""What the Prefect UI learns from each change: an inventory per kind, the resource as
it now is, and one event per outcome.

- The inventory is a table artifact under a stable key per kind (`storeflow-spaces`,
  `storeflow-cifs-exposers`, ...): the Artifacts page shows its latest version, and
  every lifecycle run and reconcile rewrites it.
- The resource as a run left it is a small table on that run.
- Events are what automations trigger on: `storeflow.<kind>.<action>.<outcome>`
  (`storeflow.replica.sync.errored`), `storeflow.reconcile.<change>`, and
  `storeflow.space.quota.warning` for a space past its usage threshold.  Resource
  labels: kind, name, space, status, etag.
"""

import contextvars
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from prefect.artifacts import create_table_artifact
from prefect.events import emit_event

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput
from storeflow.models.names import format_size
from storeflow.models.schemas import ResourceView
from storeflow.tasks import kinds

QUOTA_WARNING_ENV = "STOREFLOW_QUOTA_WARNING"
DEFAULT_QUOTA_WARNING = 0.9
# Every version of a keyed artifact is kept by the server, and every lifecycle run
# writes one: a fleet's inventory is bounded, so that they stay small (about 150 bytes
# a row) and the UI can show them.
INVENTORY_ROWS = 1000
# Artifacts are small; a server that takes longer is not answering.
PUBLISH_TIMEOUT = 60.0


def inventory_key(kind: str) -> str:
    """The inventory's artifact key: `storeflow-spaces`, `storeflow-nfs-exposers`."""
    return f"storeflow-{kind}s"


@dataclass(frozen=True)
class Table:
    """One table artifact to write: its rows, its key (None: on the run only) and what it
    says."""

    rows: list[dict[str, str]]
    description: str
    key: str | None = None


def inventory_table(config: StoreflowConfig, kind_name: str) -> Table:
    """A kind's inventory, read from the database: every resource of the kind, or the
    INVENTORY_ROWS most recently changed of a larger fleet."""
    kind = kinds.get(kind_name)
    with session_scope(config.database_url) as session:
        rows, total = repository.recently_changed(session, kind.name, INVENTORY_ROWS)
    headers = ["name", "status", "etag", *kind.columns]
    table = [
        dict(
            zip(
                headers,
                [row.name, row.status.value, str(row.etag), *kinds.cells(row, list(kind.columns))],
                strict=True,
            )
        )
        for row in rows
    ]
    return Table(
        rows=table or [dict.fromkeys(headers, "-")],
        description=_inventory_description(kind, len(rows), total),
        key=inventory_key(kind.name),
    )


def _inventory_description(kind: kinds.ResourceKind, shown: int, total: int) -> str:
    if shown == total:
        return f"{kind.help} {total} {kind.name}(s), as of this run."
    return (
        f"{kind.help} The {shown} most recently changed of {total} {kind.name}s, as of "
        f"this run (`storeflow {kind.command or kind.name} list` lists them all)."
    )


def resource_table(resource: dict[str, Any]) -> Table:
    """The resource as a run left it, field by field."""
    shown = {
        "kind": resource.get("kind"),
        "name": resource.get("name"),
        "status": resource.get("status"),
        "etag": resource.get("etag"),
        "message": resource.get("status_message") or "",
        **{f"spec.{key}": value for key, value in (resource.get("spec") or {}).items()},
        **{f"state.{key}": value for key, value in (resource.get("state") or {}).items()},
    }
    return Table(
        rows=[{"field": key, "value": str(value)} for key, value in shown.items()],
        description=f"{resource.get('kind')} {resource.get('name')!r} as this run left it",
    )


class Publishing:
    """Table artifacts being written, each by its own thread with the run's context (the
    artifact belongs to the run): every write is one request, and the requests overlap
    one another and whatever the run does meanwhile."""

    def __init__(self, tables: list[Table]) -> None:
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(
                target=contextvars.copy_context().run,
                args=(self._write, table),
                name=f"artifact-{table.key or 'run'}",
            )
            for table in tables
        ]
        for thread in self.threads:
            thread.start()

    def _write(self, table: Table) -> None:
        try:
            create_table_artifact(table=table.rows, key=table.key, description=table.description)
        except BaseException as exc:  # wait() raises it in the caller's thread
            self.errors.append(exc)

    def wait(self, timeout: float = PUBLISH_TIMEOUT) -> None:
        """Until every write ended (at most `timeout` seconds); raise the first failure."""
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        late = [thread.name for thread in self.threads if thread.is_alive()]
        if late:
            raise TimeoutError(f"{', '.join(late)} not written after {timeout:.0f} s")
        if self.errors:
            raise self.errors[0]


def publish(tables: list[Table]) -> None:
    """Write `tables` as table artifacts of the current run, at the same time."""
    Publishing(tables).wait()


class Pending:
    """Artifacts a flow run started writing and has not waited for, by flow run id: a
    lifecycle run starts them as its body ends and waits in its final-state hook, so
    they are written while Prefect records the final state, not before (they were most
    of what a lifecycle run added to Prefect's own cost: bench/lifecycle.py)."""

    lock: ClassVar[threading.Lock] = threading.Lock()
    by_run: ClassVar[dict[str, Publishing]] = {}

    @classmethod
    def start(cls, run_id: str, tables: list[Table]) -> None:
        publishing = Publishing(tables)
        with cls.lock:
            cls.by_run[run_id] = publishing

    @classmethod
    def finish(cls, run_id: str) -> None:
        """Wait for what run `run_id` started (nothing if none); raise its failure."""
        with cls.lock:
            publishing = cls.by_run.pop(run_id, None)
        if publishing is not None:
            publishing.wait()


def publish_inventory(config: StoreflowConfig, kind_name: str) -> None:
    """Rewrite a kind's inventory table from the database."""
    publish([inventory_table(config, kind_name)])


def labels(kind: str, name: str, resource: dict[str, Any] | None) -> dict[str, str]:
    """The event's resource: what automations can match on."""
    spec = (resource or {}).get("spec") or {}
    space = name if kind == "space" else spec.get("space", "")
    return {
        "prefect.resource.id": f"storeflow.{kind}.{name}",
        "prefect.resource.name": name,
        "storeflow.kind": kind,
        "storeflow.name": name,
        "storeflow.space": str(space or ""),
        "storeflow.status": str((resource or {}).get("status", "")),
        "storeflow.etag": str((resource or {}).get("etag", "")),
    }


def emit_outcome(
    kind: str,
    action: str,
    name: str,
    outcome: str,
    resource: dict[str, Any] | None,
    message: str | None,
) -> None:
    """`storeflow.<kind>.<action>.<outcome>`, e.g. `storeflow.space.update.refused`."""
    emit_event(
        event=f"storeflow.{kind}.{action}.{outcome.lower()}",
        resource=labels(kind, name, resource),
        payload={"message": message or ""},
    )


def quota_warning_threshold() -> float:
    raw = os.environ.get(QUOTA_WARNING_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_QUOTA_WARNING
    except ValueError:
        raise InvalidInput(QUOTA_WARNING_ENV, f"{raw!r} is not a fraction") from None
    if not 0 < value <= 1:
        raise InvalidInput(QUOTA_WARNING_ENV, f"{raw} is not between 0 and 1")
    return value


def warn_if_over_quota(space: ResourceView | dict[str, Any]) -> bool:
    """`storeflow.space.quota.warning` when a space's usage passed its threshold (of a
    quota that is set); True when it was emitted."""
    data = space.model_dump(mode="json") if isinstance(space, ResourceView) else space
    quota = int((data.get("spec") or {}).get("quota") or 0)
    used = int((data.get("state") or {}).get("usage_bytes") or 0)
    threshold = quota_warning_threshold()
    if not quota or used < quota * threshold:
        return False
    emit_event(
        event="storeflow.space.quota.warning",
        resource=labels("space", str(data.get("name")), data),
        payload={
            "used": used,
            "quota": quota,
            "threshold": threshold,
            "message": f"{format_size(used)} of {format_size(quota)} used",
        },
    )
    return True
