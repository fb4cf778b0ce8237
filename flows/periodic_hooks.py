"""The periodic hook: every hook driver's `execute_periodic_hook`, on a schedule.

Deployed with `periodic_hooks_interval` as its interval (prefect.yaml).
"""

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from storeflow.blocks.config import StoreflowConfig, resolve_config
from storeflow.flows.common import ConfigName
from storeflow.models import repository
from storeflow.models.db import session_scope
from storeflow.tasks import kinds
from storeflow.tasks.hook_base import HookBase, HookContext, load_drivers


@task(name="collect-periodic-hook-data", cache_policy=NO_CACHE)
def collect_periodic_hook_data(config: StoreflowConfig) -> dict[str, list[dict[str, Any]]]:
    with session_scope(config.database_url) as session:
        return {
            kind.name: kind.periodic_hook_data(
                [r for r in repository.list_kind(session, kind.name) if not r.deleted]
            )
            for kind in kinds.all_kinds()
        }


@task(name="periodic-hook", cache_policy=NO_CACHE, task_run_name="periodic-hook: {name}")
def run_periodic_hook(name: str, driver: HookBase, data: dict[str, Any]) -> None:
    context = HookContext(kind="*", action="periodic", resource_name="*")
    driver.execute_periodic_hook(context, data)


@flow(name="periodic-hooks", flow_run_name="periodic-hooks")
def periodic_hooks(config: ConfigName = None) -> State[Any]:
    """Run each configured driver's periodic hook; the state says which ran, on what.

    Args:
        config: A saved StoreflowConfig block; none: configuration from the environment.
    """
    cfg = resolve_config(config)
    drivers = load_drivers(cfg.hooks, cfg.hooks.hook_drivers)
    if not drivers:
        get_run_logger().info("no hook drivers configured")
        return Completed(message="periodic hooks: no hook drivers configured", data=0)
    data = collect_periodic_hook_data(cfg)
    for driver in drivers:
        run_periodic_hook(type(driver).__name__, driver, data)
    ran = [type(d).__name__ for d in drivers if d.periodic_hooks_enabled]
    counts = ", ".join(f"{len(rows)} {kind}" for kind, rows in data.items() if rows)
    message = (
        f"periodic hooks: {', '.join(ran) or 'none enabled'} "
        f"({len(ran)} of {len(drivers)} drivers) on {counts or 'no resources'}"
    )
    get_run_logger().info(message)
    return Completed(message=message, data=len(ran))
