"""The reconcile flow (the seed's populate/ReconcileDBTask)."""

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from blocks.config import resolve_config
from tasks.reconcile import Change, reconcile_all


@flow(name="reconcile", flow_run_name="reconcile")
def reconcile(config: str | None = None) -> list[Change]:
    """Bring the database up to date with the filesystem; report changes as a table."""
    changes = reconcile_all(resolve_config(config))
    create_table_artifact(
        key="storeflow-reconcile",
        table=[c.row() for c in changes] or [{"kind": "-", "name": "-", "change": "none"}],
        description=f"reconcile: {len(changes)} change(s)",
    )
    get_run_logger().info("reconcile: %d change(s)", len(changes))
    return changes
