"""The reconcile flow (the seed's populate/ReconcileDBTask)."""

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.tasks import kinds
from storeflow.tasks.reconcile import Change, Reconciler


@task(name="reconcile-step", cache_policy=NO_CACHE, task_run_name="reconcile: {name}")
def reconcile_step(name: str, reconciler: Reconciler, config: StoreflowConfig) -> list[Change]:
    return reconciler(config)


@flow(name="reconcile", flow_run_name="reconcile")
def reconcile(config: str | None = None) -> list[Change]:
    """Bring the database up to date with the real system; report changes as a table."""
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
    get_run_logger().info("reconcile: %d change(s)", len(changes))
    return changes
