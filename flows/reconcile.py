"""The reconcile flow (the seed's populate/ReconcileDBTask)."""

from collections import Counter
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.states import Completed, State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.common import ConfigName
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.tasks import inventory, kinds
from storeflow.tasks.reconcile import Change, Reconciler


@task(name="reconcile-step", cache_policy=NO_CACHE, task_run_name="reconcile: {name}")
def reconcile_step(name: str, reconciler: Reconciler, config: StoreflowConfig) -> list[Change]:
    return reconciler(config)


@flow(name="reconcile", flow_run_name="reconcile")
def reconcile(config: ConfigName = None) -> State[Any]:
    """Bring the database up to date with the real system.

    Its changes are a table artifact (`storeflow-reconcile`) and one event each
    (`storeflow.reconcile.<change>`); every kind's inventory is rewritten, spaces past
    their quota threshold warn, and the run's state message sums it up.

    Args:
        config: A saved StoreflowConfig block; none: configuration from the environment.
    """
    cfg = resolve_config(config)
    changes: list[Change] = []
    for path in kinds.reconcilers():  # each registered kind's, once each
        reconciler: Reconciler = kinds.reconciler(path)
        changes += reconcile_step(reconciler.__name__.removeprefix("reconcile_"), reconciler, cfg)
    create_table_artifact(
        key="storeflow-reconcile",
        table=[c.row() for c in changes] or [{"kind": "-", "name": "-", "change": "none"}],
        description=f"reconcile: {len(changes)} change(s)",
    )
    tell(cfg, changes)
    summary = summarise(changes)
    get_run_logger().info(summary)
    return Completed(message=summary, data=changes)


def summarise(changes: list[Change]) -> str:
    """`reconcile: 2 adopted, 1 released` (or `nothing to change`)."""
    counted = Counter(change.change for change in changes)
    parts = [f"{count} {change}" for change, count in sorted(counted.items())]
    return f"reconcile: {', '.join(parts) or 'nothing to change'}"


@task(name="reconcile-report", cache_policy=NO_CACHE)
def tell(config: StoreflowConfig, changes: list[Change]) -> None:
    """One event per change, every kind's inventory, quota warnings."""
    for change in changes:
        emit_event(
            event=f"storeflow.reconcile.{change.change.replace(' ', '-')}",
            resource=inventory.labels(change.kind, change.name, None),
            payload={"detail": change.detail},
        )
    for kind in kinds.all_kinds():
        inventory.publish_inventory(config, kind.name)
    with session_scope(config.database_url) as session:
        spaces = repository.list_kind(session, "space")
    for space in spaces:
        inventory.warn_if_over_quota(space)
