"""The transfer-batch flow: one slice of a fanned-out transfer (tasks/transfer/fanout.py).

A `transfer` run with `fan_out` > 1 starts one run of the `transfer-batch` deployment
per slice of its plan, as its child runs; any worker of the pool picks them up.  A
child copies its slice under temporary names and runs AFTER_RESULT_RECEIVED for it;
nothing is renamed into place here (the parent's `post` does that once, for the whole
plan).  Final state: `Completed(name="Delivered")` with the counters, or
`Failed(name="Errored")` with the reason (its temporary files removed).
"""

from typing import Annotated, Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as current_flow_run
from prefect.states import Completed, Failed, State
from pydantic import Field

from storeflow.flows.common import note_run_name
from storeflow.models.errors import StoreflowError
from storeflow.models.names import Text
from storeflow.models.transfer import TransferDefinition
from storeflow.sandbox.definitions import CallbackDefinition, CallbackError
from storeflow.sandbox.isolation import IsolationUnavailable
from storeflow.tasks.transfer.callbacks import BoundCallbacks
from storeflow.tasks.transfer.engine import DEFAULT_BATCH_SIZE
from storeflow.tasks.transfer.fanout import MAX_FAN_OUT, MAX_SLICE_FILES, SliceFile, deliver_slice
from storeflow.tasks.transfer.preparation import callback_set


def _run_name() -> str:
    params = current_flow_run.parameters
    return f"transfer/{params.get('name')}: batch {params.get('part')}/{params.get('parts')}"


@flow(name="transfer-batch", flow_run_name=_run_name, validate_parameters=True)
def transfer_batch(
    definition: TransferDefinition,
    name: Text,
    files: Annotated[list[SliceFile], Field(max_length=MAX_SLICE_FILES)],
    part: Annotated[int, Field(ge=1, le=MAX_FAN_OUT)] = 1,
    parts: Annotated[int, Field(ge=1, le=MAX_FAN_OUT)] = 1,
    callbacks: list[CallbackDefinition] | None = None,
    callbacks_dir: Text | None = None,
    sandbox_policy: Text | None = None,
    max_workers: Annotated[int | None, Field(ge=1, le=64)] = None,
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = DEFAULT_BATCH_SIZE,
) -> State[Any]:
    """Deliver one slice of a fanned-out transfer under temporary names.

    Args:
        definition: The parent transfer's OTF definition (its source and destinations).
        name: The parent transfer's task id (callbacks' `req.id`), its source directory
            when it has no name.
        files: The slice: each file's listing and final names, with FILTER's metadata.
        part: Which slice this is (1-based), for the run's name.
        parts: How many slices the transfer has.
        callbacks: The parent's inline callback definitions (AFTER_RESULT_RECEIVED runs
            here).
        callbacks_dir: The parent's hook directory laid out `<stage>/<name>.py|.js`.
        sandbox_policy: The parent's saved SandboxPolicy block.
        max_workers: Copy workers in this run. Empty: the engine's default.
        batch_size: Files per batch: one native copy call and one AFTER_RESULT_RECEIVED
            round trip each.
    """
    note_run_name()
    label = f"transfer/{name}: batch {part}/{parts}"
    try:
        cbs = callback_set(name, callbacks, callbacks_dir, sandbox_policy)
    except (IsolationUnavailable, CallbackError) as exc:
        return Failed(name="Errored", message=f"{label}: {exc}")
    with cbs:
        bound = BoundCallbacks(cbs, definition)
        bound.filtered.update({f.name: f.metadata for f in files if f.metadata})
        try:
            delivery = deliver_slice(
                definition,
                files,
                after_results=bound.after_results,
                max_workers=max_workers,
                batch_size=batch_size,
            )
        except StoreflowError as exc:
            get_run_logger().error("%s failed: %s", label, exc)
            return Failed(name="Errored", message=f"{label}: {exc}")
    counters = {
        "files": delivery.files,
        "bytes": delivery.bytes,
        "seconds": round(delivery.seconds, 3),
        **bound.summary(),
    }
    return Completed(
        name="Delivered",
        message=f"{label}: {delivery.files} files, {delivery.bytes} bytes under temporary names",
        data=counters,
    )
