"""The transfer flow: one Open Task Framework transfer definition, run with callbacks.

Runs from the CLI (`storeflow transfer run DEFINITION`) or as the `transfer`
deployment with parameters from the Prefect API or UI.  The final state is named after
the outcome: `Completed(name="Delivered")`, `Failed(name="Vetoed")`,
`Failed(name="Refused")` (unsafe or incomplete, nothing copied) or
`Failed(name="Errored")`.
"""

from typing import Annotated, Any

from prefect import flow
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Failed, State
from pydantic import Field

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import ConfigName, close_interrupted, note_run_name
from storeflow.models.errors import StoreflowError
from storeflow.models.names import TaskId, Text
from storeflow.models.transfer import TransferDefinition, parse_definition
from storeflow.sandbox.definitions import CallbackDefinition, CallbackError
from storeflow.sandbox.isolation import IsolationUnavailable
from storeflow.tasks.lifecycle import current_run_id
from storeflow.tasks.otf.addon_run import run_with_addons
from storeflow.tasks.otf.addons import uses_addons
from storeflow.tasks.transfer.callbacks import BoundCallbacks
from storeflow.tasks.transfer.engine import DEFAULT_BATCH_SIZE, default_workers
from storeflow.tasks.transfer.fanout import MAX_FAN_OUT, FanOut
from storeflow.tasks.transfer.preparation import callback_set, load_raw, task_id_of
from storeflow.tasks.transfer.steps import TransferRun, run_steps


def _run_name() -> str:
    params = current_flow_run.parameters
    given = params.get("definition") or params.get("otf_definition")
    return f"transfer/{task_id_of(given, params.get('name'))}"


@flow(
    name="transfer",
    flow_run_name=_run_name,
    validate_parameters=True,
    on_crashed=[close_interrupted],
    on_cancellation=[close_interrupted],
)
def transfer(
    definition: TransferDefinition | None = None,
    name: TaskId | None = None,
    config_dir: Text | None = None,
    otf_definition: dict[str, Any] | None = None,
    callbacks: list[CallbackDefinition] | None = None,
    callbacks_dir: Text | None = None,
    sandbox_policy: Text | None = None,
    config: ConfigName = None,
    max_workers: Annotated[int | None, Field(ge=1, le=64)] = None,
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = DEFAULT_BATCH_SIZE,
    fan_out: Annotated[int, Field(ge=0, le=MAX_FAN_OUT)] = 0,
) -> State[Any]:
    """Run one OTF transfer definition with its callbacks.

    Args:
        definition: The OTF transfer definition, inline (or give config_dir and name).
        name: The transfer task's id (callbacks' `req.id`; executions are recorded under
            it); defaults to the source directory. With config_dir: the task to run.
        config_dir: An OTF config directory on the worker, whose task `name`
            (`name.json` or `name.json.j2`) is rendered with its variables and lookups
            as OTF's `task-run -t NAME -c DIR` does.
        otf_definition: An OTF transfer whose source or a destination is an installed
            OTF addon (its fully qualified class name), as written; validated by the
            addon's JSON schemas (needs storeflow[otf]).
        callbacks: Inline callback definitions.
        callbacks_dir: A hook directory laid out `<stage>/<name>.py|.js`.
        sandbox_policy: A saved SandboxPolicy block (its hook directories are searched
            too).
        config: A saved StoreflowConfig block.
        max_workers: Copy workers. Empty: the engine's default
            (tasks/transfer/engine.py:default_workers), the cores this worker may use,
            2 to 8.
        batch_size: Files per batch: one native copy call and one AFTER_RESULT_RECEIVED
            round trip each. The default is the engine's
            (tasks/transfer/engine.py:DEFAULT_BATCH_SIZE).
        fan_out: Copy in this many child runs of the `transfer-batch` deployment, slices
            of the plan balanced by bytes, that any worker picks up; the files are
            still renamed into place once, by this run, when all delivered. 0 or 1:
            copy here. Every worker must reach the source and destinations; for large
            files or a few thousand files (tasks/transfer/fanout.py); AFTER_RESULT_RECEIVED
            runs in the child runs.
    """
    note_run_name()  # run_here reports the name without reading the run back
    given = [x for x in (definition, config_dir, otf_definition) if x is not None]
    if len(given) != 1:
        return Failed(
            name="Refused",
            message="transfer: give definition, otf_definition, or name and config_dir",
        )
    if config_dir is not None:
        try:
            raw = load_raw(config_dir, name)
            if uses_addons(raw):
                otf_definition = raw
            else:
                definition = parse_definition(raw, str(name))
        except StoreflowError as exc:
            return Failed(name="Refused", message=f"transfer/{name}: {exc}")
    if otf_definition is not None and fan_out > 1:
        # An addon's files are staged on this worker: no other worker could read them.
        return Failed(name="Refused", message="transfer: fan_out does not take an otf_definition")
    if otf_definition is not None:
        return run_with_addons(
            otf_definition,
            task_id_of(otf_definition, name),
            lambda d, task_id: _run(
                d, task_id, callbacks, callbacks_dir, sandbox_policy, config,
                max_workers, batch_size, 0,
            ),
        )  # fmt: skip
    assert definition is not None
    return _run(
        definition,
        task_id_of(definition, name),
        callbacks,
        callbacks_dir,
        sandbox_policy,
        config,
        max_workers,
        batch_size,
        fan_out,
    )


def _run(
    definition: TransferDefinition,
    task_id: str,
    callbacks: list[CallbackDefinition] | None,
    callbacks_dir: str | None,
    sandbox_policy: str | None,
    config: ConfigName,
    max_workers: int | None,
    batch_size: int,
    fan_out: int,
) -> State[Any]:
    """One storeflow transfer through its steps, with its callbacks."""
    fan = None
    if fan_out > 1:
        # What each child run needs besides its slice: the same callbacks and tuning.
        shared = {
            "name": task_id,
            "callbacks": [c.model_dump(mode="json") for c in callbacks or []],
            "callbacks_dir": callbacks_dir,
            "sandbox_policy": sandbox_policy,
            "max_workers": max_workers,
            "batch_size": batch_size,
        }
        fan = FanOut(parts=fan_out, parameters=shared)
    if max_workers is None:
        max_workers = default_workers()
    try:
        cbs = callback_set(task_id, callbacks, callbacks_dir, sandbox_policy)
    except (IsolationUnavailable, CallbackError) as exc:
        return Failed(name="Refused", message=f"transfer/{task_id}: {exc}")
    with cbs:
        run = TransferRun(
            config=resolve_config(config),
            definition=definition,
            task_id=task_id,
            flow_run_id=current_run_id(),
            callbacks=BoundCallbacks(cbs, definition),
            max_workers=max_workers,
            batch_size=batch_size,
            fan_out=fan,
        )
        return run_steps(run)
