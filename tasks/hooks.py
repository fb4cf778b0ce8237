"""Hook steps: run the configured hook drivers as Prefect tasks."""

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from storeflow.models.errors import Refused
from storeflow.tasks.hook_base import ActionResults, HookBase, HookContext, HookVeto


@task(name="pre-hooks", cache_policy=NO_CACHE, task_run_name="{label}: pre-hooks")
def run_pre_hooks(
    label: str, drivers: list[HookBase], context: HookContext, func_name: str
) -> list[Any] | State[Any]:
    """Each driver's pre hook, in order.

    A veto, or an error that is not suppressed, stops the operation before it
    touches anything: the answer is a `Refused` state naming the driver.
    """
    results = []
    for driver in drivers:
        name = type(driver).__name__
        try:
            results.append(driver.execute_pre_hook(context=context, func_name=func_name))
        except HookVeto as exc:
            veto = HookVeto(f"vetoed by {name}: {exc}")
            return Failed(name="Refused", message=str(veto), data=veto)
        except Exception as exc:
            get_run_logger().error("pre hook of %s failed: %s", name, exc)
            refusal = Refused(f"pre hook of {name} failed: {exc}")
            return Failed(name="Refused", message=str(refusal), data=refusal)
    return results


@task(name="post-hooks", cache_policy=NO_CACHE, task_run_name="{label}: post-hooks")
def run_post_hooks(
    label: str,
    drivers: list[HookBase],
    context: HookContext,
    func_name: str,
    pre_data: list[Any],
    results: ActionResults,
) -> ActionResults:
    """Each driver's post hook, in order; one returning ActionResults replaces them."""
    logger = get_run_logger()
    padded = pre_data + [None] * (len(drivers) - len(pre_data))
    for driver, data in zip(drivers, padded, strict=True):
        returned = driver.execute_post_hook(
            context=context,
            func_name=func_name,
            pre_hook_data=data,
            driver_action_results=results,
        )
        if isinstance(returned, ActionResults):
            logger.info("%s replaced the result: %s", type(driver).__name__, returned.status)
            results = returned
    return results
