"""Fan-out: one transfer's copy as child runs that any worker picks up.

For the day one machine's disks or links are not enough: with `fan_out` > 1 the
transfer flow's `perform` splits the plan's files into that many slices, balanced by
bytes, and starts one run of the `transfer-batch` deployment per slice (child runs of
the transfer in the UI).  Each child opens its own handlers and delivers its slice under
temporary names, exactly as a local `perform` does (engine.deliver); the parent waits
for all of them and its `post` renames into place once, over the whole plan.  When a
child fails (or the wait times out) the others are cancelled, every temporary file of
the plan is removed and `perform` fails: nothing is ever under a final name.

Every worker must reach the source and the destinations under the same names (a shared
filesystem, SMB, NFS).  A slice travels as a run parameter, stored by Prefect: fan-out
is for large files or a few thousand files (at most `MAX_SLICE_FILES` a slice), and
inline SMB passwords are refused (name a saved block instead).  FILTER runs at plan
time in the parent; AFTER_RESULT_RECEIVED runs in the children, with the same callback
settings and the metadata FILTER left for each file.  The metadata the children's
callbacks store lands on the delivered files as always, but not in the parent's
execution record.
"""

import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.states import Cancelled, Cancelling, State
from pydantic import BaseModel, Field

from storeflow.models.errors import Refused
from storeflow.models.transfer import TransferDefinition
from storeflow.tasks.transfer.engine import (
    AfterResults,
    CopyCounters,
    Delivery,
    Handlers,
    PlannedFile,
    ProgressHook,
    TransferPlan,
    deliver,
    remove_temps,
)
from storeflow.tasks.transfer.entries import Entry, Kind
from storeflow.tasks.transfer.errors import TransferError

#: The child runs' deployment (`flow/deployment`, prefect.yaml).
DEPLOYMENT = "transfer-batch/transfer-batch"
#: Child runs per transfer, at most.
MAX_FAN_OUT = 64
#: Files per slice, at most: a slice is a run parameter, stored in Prefect's database.
MAX_SLICE_FILES = 2_000
#: How long the parent waits for its children by default (a big copy takes hours).
WAIT_SECONDS = 12 * 3600.0
#: After a failure, how long cancelled children get to stop before temps are removed.
CANCEL_WAIT_SECONDS = 120.0
POLL_SECONDS = 2.0
FINAL = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


class FanOutRefused(Refused):
    """Fan-out refused before any child run started (a slice too big for a parameter,
    an inline password): nothing copied."""


class FanOutFailed(TransferError):
    """A child run did not deliver its slice (or the wait timed out)."""


class SliceFile(BaseModel):
    """One planned file as a child run's parameter: its listing and final names."""

    name: str
    path: str
    size: int = Field(ge=0)
    mtime_ns: int = 0
    atime_ns: int = 0
    ctime_ns: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    #: Final name in each destination (the definition's order).
    targets: list[str]
    #: What FILTER left for AFTER_RESULT_RECEIVED to start from.
    metadata: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class FanOut:
    """How a transfer fans out: `parts` child runs, each run with `parameters` (the
    callback settings and copy tuning) besides its slice."""

    parts: int
    parameters: dict[str, Any] = field(default_factory=dict)
    wait_seconds: float = WAIT_SECONDS
    deployment: str = DEPLOYMENT


# -- slicing ------------------------------------------------------------------------------


def split_by_bytes(files: Sequence[PlannedFile], parts: int) -> list[list[PlannedFile]]:
    """`files` in at most `parts` non-empty slices of nearly equal bytes: the largest file
    first, each to the lightest slice so far (within one file's size of balanced).  Each
    slice keeps the plan's order."""
    parts = max(1, min(parts, len(files)))
    heap = [(0, index) for index in range(parts)]  # (bytes, slice)
    chosen: list[list[int]] = [[] for _ in range(parts)]
    for position in sorted(range(len(files)), key=lambda i: -files[i].entry.size):
        load, index = heapq.heappop(heap)
        chosen[index].append(position)
        heapq.heappush(heap, (load + files[position].entry.size, index))
    return [[files[i] for i in sorted(positions)] for positions in chosen if positions]


def as_slice(files: Sequence[PlannedFile], metadata: dict[str, dict[str, str]]) -> list[SliceFile]:
    """The child's parameter for `files`; `metadata`: FILTER's, by source name."""
    return [
        SliceFile(
            name=p.entry.name,
            path=p.entry.path,
            size=p.entry.size,
            mtime_ns=p.entry.mtime_ns,
            atime_ns=p.entry.atime_ns,
            ctime_ns=p.entry.ctime_ns,
            mode=p.entry.mode,
            uid=p.entry.uid,
            gid=p.entry.gid,
            targets=list(p.targets),
            metadata=metadata.get(p.entry.name, {}),
        )
        for p in files
    ]


def planned_of(files: Sequence[SliceFile]) -> tuple[PlannedFile, ...]:
    """A child's slice back as the engine's planned files."""
    return tuple(
        PlannedFile(
            Entry(
                f.name, Kind.FILE, f.path, f.size, f.mtime_ns, f.atime_ns, f.ctime_ns,
                f.mode, f.uid, f.gid,
            ),
            tuple(f.targets),
        )
        for f in files
    )  # fmt: skip


def check_slices(slices: Sequence[Sequence[PlannedFile]]) -> None:
    biggest = max((len(s) for s in slices), default=0)
    if biggest > MAX_SLICE_FILES:
        raise FanOutRefused(
            f"fan-out: a slice of {biggest} files is more than {MAX_SLICE_FILES} "
            "(fan-out is for large files or a few thousand files; raise fan_out or copy "
            "without it)"
        )


def check_definition(definition: TransferDefinition) -> None:
    """A child's definition is a stored parameter: no inline password goes there."""
    specs: list[Any] = [definition.source, *definition.destination]
    for spec in specs:
        if getattr(spec.protocol, "credentials", None) is not None:
            raise FanOutRefused(
                "fan-out: inline credentials would be stored with the child runs' "
                "parameters; name a saved block instead"
            )


# -- the child's side ---------------------------------------------------------------------


def deliver_slice(
    definition: TransferDefinition,
    files: Sequence[SliceFile],
    *,
    after_results: AfterResults | None,
    max_workers: int | None,
    batch_size: int,
) -> Delivery:
    """A child run's copy: its slice under temporary names (engine.deliver, which removes
    the slice's temporary files if it fails)."""
    plan = TransferPlan(definition, planned_of(files))
    return deliver(
        plan, after_results=after_results, max_workers=max_workers, batch_size=batch_size
    )


# -- the parent's side --------------------------------------------------------------------


def deliver_fanned_out(
    plan: TransferPlan,
    fan: FanOut,
    *,
    label: str,
    metadata: dict[str, dict[str, str]],
    handlers: Handlers,
    progress: ProgressHook | None = None,
) -> Delivery:
    """Deliver `plan` as child runs, one per slice; return when all delivered.  On any
    failure: the rest cancelled, every temporary file of the plan removed, raised."""
    started = time.monotonic()
    check_definition(plan.definition)
    slices = split_by_bytes(plan.files, fan.parts)
    check_slices(slices)
    copies = max(1, len(plan.definition.destination))
    children: list[FlowRun] = []
    try:
        for index, files in enumerate(slices, start=1):
            children.append(
                start_child(plan.definition, files, index, len(slices), fan, label, metadata)
            )
        get_run_logger().info(
            "%s: %d child runs of %s started", label, len(children), fan.deployment
        )
        ended = wait_for(children, slices, copies, fan.wait_seconds, plan, progress)
        failed = [run for run in ended if run.state_type is not StateType.COMPLETED]
        if failed:
            raise FanOutFailed(f"fan-out: {describe(failed)}")
        get_run_logger().info("%s: every slice delivered: %s", label, describe(ended))
    except BaseException:
        stop_children(children)
        remove_temps(plan, handlers.destinations)
        raise
    return Delivery(len(plan.files), plan.total_bytes * copies, time.monotonic() - started)


def start_child(
    definition: TransferDefinition,
    files: Sequence[PlannedFile],
    index: int,
    parts: int,
    fan: FanOut,
    label: str,
    metadata: dict[str, dict[str, str]],
) -> FlowRun:
    """One child run of the batch deployment, scheduled now; not waited for here."""
    parameters = {
        **fan.parameters,
        "definition": definition.model_dump(mode="json", by_alias=True),
        "files": [f.model_dump(mode="json") for f in as_slice(files, metadata)],
        "part": index,
        "parts": parts,
    }
    run = run_deployment(
        fan.deployment,
        parameters=parameters,
        flow_run_name=f"{label}: batch {index}/{parts}",
        timeout=0,
        as_subflow=True,  # the UI shows the slices as the transfer's child runs
    )
    assert isinstance(run, FlowRun)  # run_deployment called from sync code runs sync
    return run


def wait_for(
    children: Sequence[FlowRun],
    slices: Sequence[Sequence[PlannedFile]],
    copies: int,
    seconds: float,
    plan: TransferPlan,
    progress: ProgressHook | None,
) -> list[FlowRun]:
    """Poll the children until every one ended (or one failed: no use waiting for the
    rest); the progress hook counts the slices delivered so far."""
    ids = [run.id for run in children]
    sizes = [(len(s), sum(p.entry.size for p in s)) for s in slices]  # (files, bytes)
    deadline = time.monotonic() + seconds
    while True:
        runs = read_runs(ids)
        ended = [run for run in runs if run.state_type in FINAL]
        if progress is not None:
            done = {run.id for run in ended if run.state_type is StateType.COMPLETED}
            counted = [size for run_id, size in zip(ids, sizes, strict=True) if run_id in done]
            progress(
                CopyCounters(
                    sum(n for n, _ in counted),
                    len(plan.files),
                    sum(b for _, b in counted) * copies,
                    plan.total_bytes * copies,
                )
            )
        if len(ended) == len(ids) or any(r.state_type is not StateType.COMPLETED for r in ended):
            return runs
        if time.monotonic() > deadline:
            raise FanOutFailed(
                f"fan-out: child runs not done after {seconds:.0f}s: {describe(runs)}"
            )
        time.sleep(POLL_SECONDS)


def read_runs(ids: Sequence[UUID]) -> list[FlowRun]:
    """The children as the API has them now, in `ids` order."""
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids)))
        )
    by_id = {run.id: run for run in found}
    return [by_id[run_id] for run_id in ids if run_id in by_id]


def stop_children(children: Sequence[FlowRun]) -> None:
    """Cancel every child not yet ended and wait (bounded) until they have: their copies
    must stop before the plan's temporary files are removed."""
    if not children:
        return
    ids = [run.id for run in children]
    with get_client(sync_client=True) as client:
        for run in read_runs(ids):
            if run.state_type in FINAL:
                continue
            # A running child is stopped by its worker; one not yet picked up never starts.
            state: State[Any] = Cancelling() if run.state_type is StateType.RUNNING else Cancelled()
            client.set_flow_run_state(run.id, state, force=True)
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < deadline:
        if all(run.state_type in FINAL for run in read_runs(ids)):
            return
        time.sleep(POLL_SECONDS)
    get_run_logger().warning(
        "fan-out: child runs still not stopped after %.0fs", CANCEL_WAIT_SECONDS
    )


def describe(runs: Sequence[FlowRun]) -> str:
    """Each run's name and state, with the first failure's message."""
    said = "; ".join(f"{r.name} {r.state_name or r.state_type}" for r in runs)
    failed = [r for r in runs if r.state_type in FINAL[1:]]
    if failed and failed[0].state is not None and failed[0].state.message:
        said += f" ({failed[0].name}: {failed[0].state.message})"
    return said
