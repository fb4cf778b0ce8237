"""The hooked skeleton, written once for every lifecycle operation and every transfer:

    pre-hooks -> pre -> perform -> post -> post-hooks

A `HookedRun` fills in its steps (`steps`: pre, perform and post as Prefect tasks) and
names its final state (`final_state`); `run_hooked` does the rest, the same way for all:

- a misspelt hook driver, a pre hook's veto or unsuppressed error, and a `Refused`
  raised by the steps end the run refused, before anything changed;
- post hooks run whatever happened (also after a failure or a refusal) and see the
  outcome as `ActionResults`; one may replace it, and one that fails makes it ERRORED;
- the run records a replaced outcome where it keeps its own (`record_replaced`), then
  tells the Prefect UI and automations how it ended (`announce`).
"""

from abc import ABC, abstractmethod
from typing import Any, Protocol, TypeVar

from prefect import get_run_logger
from prefect.states import State

from storeflow.models.errors import Refused, StoreflowError
from storeflow.models.status import Status
from storeflow.tasks.hook_base import (
    ActionResults,
    HookBase,
    HookConfiguration,
    HookContext,
    load_drivers,
)
from storeflow.tasks.hooks import run_post_hooks, run_pre_hooks

T = TypeVar("T")


class HookSettings(HookConfiguration, Protocol):
    """The hook drivers a configuration names ('module:Class', in order)."""

    @property
    def hook_drivers(self) -> list[str]: ...


class HookedRun(ABC):
    """One run of the skeleton: what its steps do and how its outcome is named."""

    #: `space-create/alpha`, `transfer/nightly`: in run names and log lines.
    label: str
    #: The name hook drivers see, Manila style: `create_space`, `transfer`.
    func_name: str

    @property
    @abstractmethod
    def hooks(self) -> HookSettings:
        """Which hook drivers wrap the run, and their options (Manila's configuration)."""

    @abstractmethod
    def hook_context(self) -> HookContext:
        """What the hooks are told about this run."""

    @abstractmethod
    def steps(self) -> ActionResults:
        """pre -> perform -> post. Raise `Refused` to refuse before anything changed;
        return the outcome otherwise (a failure included)."""

    @abstractmethod
    def final_state(self, results: ActionResults) -> State[Any]:
        """The flow run's final state, named after the outcome."""

    def refused(self, reason: Refused) -> ActionResults:
        """The outcome of a refusal (before anything changed)."""
        return ActionResults(status=None, error=str(reason), refused=True)

    def announce(self, results: ActionResults, state: State[Any]) -> None:
        """Tell the Prefect UI and automations how it ended (events, artifacts).
        Default: nothing."""

    def record_replaced(self, before: ActionResults, after: ActionResults) -> None:
        """After the post hooks (`after` may be `before`, or a replacement): record a
        changed outcome where the run keeps its own."""


def run_hooked(run: HookedRun) -> State[Any]:
    """Run `run` through the skeleton; return the flow run's final state."""
    drivers: list[HookBase] = []  # none if loading them is refused
    context = run.hook_context()
    pre_data: list[Any] = []
    try:
        # Inside the try: a misspelt driver is refused like any bad input, untouched.
        drivers = load_drivers(run.hooks, run.hooks.hook_drivers)
        if drivers:
            hooks = run_pre_hooks(run.label, drivers, context, run.func_name, return_state=True)
            pre_data = unwrap(hooks, list)
        results = run.steps()
    except Refused as exc:
        get_run_logger().warning("%s refused: %s", run.label, exc)
        results = run.refused(exc)
    except StoreflowError as exc:  # e.g. the database failed: a known cause, one line
        get_run_logger().error("%s failed: %s", run.label, exc)
        results = ActionResults(status=Status.ERRORED, error=str(exc))
    if drivers:
        results = _post_hooks(run, drivers, context, pre_data, results)
    state = run.final_state(results)
    try:
        run.announce(results, state)
    except Exception as exc:  # the outcome stands; the UI's copy of it is secondary
        get_run_logger().warning("%s: telling the UI how it ended failed: %s", run.label, exc)
    return state


def unwrap(state: State[Any], expected: type[T]) -> T:
    """A step's result, or the `Refused` it answered with, raised."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, expected):
        raise TypeError(f"a step returned {type(result).__name__}, not {expected.__name__}")
    return result


def _post_hooks(
    run: HookedRun,
    drivers: list[HookBase],
    context: HookContext,
    pre_data: list[Any],
    results: ActionResults,
) -> ActionResults:
    try:
        after = run_post_hooks(run.label, drivers, context, run.func_name, pre_data, results)
    except Exception as exc:
        # The work is done and recorded; a hook that fails says it is not right.
        message = f"post hook failed: {exc}"
        if results.resource is not None:
            after = results.replace(status=Status.ERRORED, message=message)
        else:
            after = results.replace(status=Status.ERRORED, error=message)
    run.record_replaced(results, after)
    return after
