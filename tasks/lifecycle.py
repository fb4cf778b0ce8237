"""The lifecycle skeleton, once for every resource kind.

    pre-hooks -> pre -> perform -> post -> post-hooks

A kind fills in a `ResourceOperation` (the seed's Builder/Updater/Deleter);
`run_operation` does everything else:

- `pre` refuses, untouched, a resource whose etag changed or that another run
  holds, then marks it INPROGRESS (DELETING and soft-deleted for a delete);
- `perform` does the real work and returns the new status (default ACTIVE);
- `post` records it, bumps the etag and frees the resource; a delete
  hard-deletes the row only if the status is ACTIVE and nobody called
  `cancel_delete`;
- a failure in perform or post rolls back what perform did (a Prefect
  transaction and the perform task's `on_rollback`), marks the resource
  ERRORED with the error, and the flow run ends `Failed(name="Errored")`;
- the final state is named after the resource status: `Completed(name="Active")`.
"""

import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar
from uuid import UUID

from prefect import Flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound
from prefect.logging.loggers import flow_run_logger
from prefect.states import Completed, Crashed, Failed, State
from prefect.transactions import Transaction, get_transaction, transaction
from sqlalchemy.orm import Session

from storeflow.blocks.config import StoreflowConfig
from storeflow.models import repository
from storeflow.models.db import DatabaseFault, session_scope
from storeflow.models.errors import (
    Busy,
    EtagConflict,
    InvalidInput,
    NameTaken,
    NotFound,
    Refused,
)
from storeflow.models.schemas import ResourceView
from storeflow.models.status import Action, Status
from storeflow.tasks import inventory
from storeflow.tasks.hook_base import ActionResults, HookContext
from storeflow.tasks.skeleton import HookedRun, HookSettings, run_hooked, unwrap


class ResourceOperation(ABC):
    """One create, update or delete of one resource: the seed's ORMTask.

    Subclasses set `kind` and `action` and implement `perform`; one that
    changes anything implements `rollback` too, which must cope with partial
    work (it also runs when perform itself fails half-way).
    """

    kind: ClassVar[str]
    action: ClassVar[Action]

    def __init__(self, config: StoreflowConfig, name: str, etag: int | None = None) -> None:
        self.config = config
        self.name = name
        self.etag = etag
        self._hard_delete = self.action is Action.DELETE
        self.lease = DEFAULT_LEASE  # seconds; the run sets it from lease_seconds()
        # What post records beside the status; perform sets what changed.
        self.new_name: str | None = None
        self.new_spec: dict[str, Any] | None = None
        self.new_state: dict[str, Any] | None = None

    # -- identity -------------------------------------------------------------

    @property
    def label(self) -> str:
        """`space-create/projects-alpha`: used in flow and task run names."""
        return f"{self.kind}-{self.action.value}/{self.name}"

    @property
    def func_name(self) -> str:
        """The name hook drivers see, Manila style: `create_space`."""
        return f"{self.action.value}_{self.kind.replace('-', '_')}"  # cifs-exposer: identifier

    def parameters(self) -> dict[str, Any]:
        """What hooks are told about the request."""
        return {"name": self.name, "etag": self.etag}

    # -- database: overridden by kinds that live inside another resource ------

    def locate(self, session: Session) -> ResourceView:
        return repository.find(session, self.kind, self.name)

    def create_row(self, session: Session) -> ResourceView:
        raise NotImplementedError(f"{type(self).__name__} does not create resources")

    # -- the seed's steps -----------------------------------------------------

    def check(self, session: Session, resource: ResourceView | None) -> None:
        """Refuse (raise `Refused`) before anything changes. Default: accept."""

    @abstractmethod
    def perform(self, resource: ResourceView) -> Status:
        """Do the work; return the resource's new status (usually ACTIVE)."""

    def rollback(self, resource: ResourceView) -> None:
        """Undo what perform did (possibly only in part). Default: nothing to undo."""

    def commit(self, resource: ResourceView) -> None:
        """Finish irreversible work once the whole operation has succeeded
        (e.g. remove a tree that perform only moved aside). Default: nothing."""

    def cancel_delete(self) -> None:
        """Keep the row at the end of a delete (the seed's `cancel_delete`)."""
        self._hard_delete = False

    @property
    def hard_delete(self) -> bool:
        return self._hard_delete


# -- locks: a lease the run renews, and runs that have ended ---------------------------

LEASE_ENV = "STOREFLOW_LOCK_LEASE"
DEFAULT_LEASE = 60.0
LOG = logging.getLogger(__name__)


def lease_seconds() -> float:
    """How long a lock outlives its run's last renewal: $STOREFLOW_LOCK_LEASE, else 60 s.

    A run renews its lease every third of that while it works, so a run killed without
    a word (kill -9, out of memory, power lost) frees its resources within one lease.
    """
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(LEASE_ENV, f"{raw!r} is not a number of seconds") from None
    if not 0.5 <= value <= 86400:
        raise InvalidInput(LEASE_ENV, f"{raw} is not between 0.5 and 86400 seconds")
    return value


def lock_is_stale(resource: ResourceView) -> bool:
    """True when the run holding `resource` has stopped: its lease ran out (it no longer
    renews it), or Prefect says the run ended (or never existed).  A run whose lease ran
    out is marked Crashed in Prefect if it still shows as running there."""
    owner = resource.lock_owner
    if owner is None:
        return False
    if repository.lease_expired(resource):
        mark_crashed(owner, f"stopped renewing its hold on {resource.kind} {resource.name!r}")
        return True
    return run_has_ended(owner)


def run_has_ended(owner: str) -> bool:
    try:
        run_id = UUID(owner)
    except ValueError:
        return True
    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            return True
    return run.state is not None and run.state.is_final()


def mark_crashed(owner: str, why: str) -> None:
    """Set a run that stopped without a word to Crashed, so the UI stops showing it
    running. Best effort: the resource is freed whether or not the server answers."""
    try:
        run_id = UUID(owner)
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            if run.state is None or not run.state.is_final():
                client.set_flow_run_state(run_id, Crashed(message=f"flow run {why}"), force=True)
    except Exception as exc:
        LOG.warning("could not mark flow run %s Crashed: %s", owner, exc)


WAIT_ENV = "STOREFLOW_LOCK_WAIT"
DEFAULT_WAIT = 60.0


def lock_wait_seconds() -> float:
    """How long a run given no etag waits for a busy resource: $STOREFLOW_LOCK_WAIT, else
    60 s (0: not at all)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_WAIT
    except ValueError:
        raise InvalidInput(WAIT_ENV, f"{raw!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:
        raise InvalidInput(WAIT_ENV, f"{raw} is not between 0 and 86400 seconds")
    return value


class Waiting:
    """Polls with a growing pause (0.05 s to 1 s) until `seconds` have passed."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.pause = 0.05

    def again(self) -> bool:
        """Sleep before the next try; False when the time is up."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(self.pause, left))
        self.pause = min(self.pause * 2, 1.0)
        return True


class LeaseKeeper:
    """Renews a run's lease on a resource from a thread of its own while the run works."""

    def __init__(self, database_url: str, resource_id: int, owner: str, lease: float) -> None:
        self.database_url, self.resource_id, self.owner = database_url, resource_id, owner
        self.lease = lease
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, name=f"storeflow-lease-{resource_id}", daemon=True
        )

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                with session_scope(self.database_url, durable=False) as session:
                    if not repository.renew(session, self.resource_id, self.owner, self.lease):
                        return  # released (or taken over): nothing more to keep
            except Exception as exc:  # a database hiccup: the next round tries again
                LOG.warning("renewing the lease on resource %s failed: %s", self.resource_id, exc)


def current_run_id() -> str:
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("lifecycle steps must run inside a flow run")
    return str(context.flow_run.id)


# -- the steps as Prefect tasks ---------------------------------------------------


@task(name="pre", cache_policy=NO_CACHE, task_run_name="{op.label}: pre")
def pre(op: ResourceOperation) -> ResourceView | State[Any]:
    """Check the etag and that nobody holds the resource; mark it INPROGRESS.

    A refusal is an answer, not a crash: it comes back as a `Refused` state.
    """
    owner, waited = current_run_id(), Waiting(lock_wait_seconds())
    while True:
        try:
            return _acquire(op, owner)
        except (Busy, EtagConflict) as exc:
            # Without an etag the run takes the resource as it finds it once free:
            # last writer wins.  With one, a conflict is the answer.
            if op.etag is None and waited.again():
                continue
            return Failed(name="Refused", message=str(exc), data=exc)
        except Refused as exc:
            return Failed(name="Refused", message=str(exc), data=exc)


def _acquire(op: ResourceOperation, owner: str) -> ResourceView:
    with session_scope(op.config.database_url) as session:
        if op.action is Action.CREATE:
            _refuse_taken_name(op, session)
            op.check(session, None)
            resource = op.create_row(session)
            etag = resource.etag
        else:
            resource = op.locate(session)
            etag = op.etag if op.etag is not None else resource.etag
            if etag == resource.etag:
                op.check(session, resource)
        deleting = op.action is Action.DELETE
        return repository.acquire(
            session,
            resource.id,
            etag,
            owner,
            Status.DELETING if deleting else Status.INPROGRESS,
            action=op.action.value,
            lease=op.lease,
            soft_delete=deleting,
            is_stale=lock_is_stale,
        )


def _refuse_taken_name(op: ResourceOperation, session: Session) -> None:
    """A create of a name storeflow already has is refused as such (before any check
    that would blame the disk, e.g. a parallel create's directory)."""
    try:
        op.locate(session)
    except NotFound as missing:
        if (missing.kind, missing.name) != (op.kind, op.name):
            raise  # what is missing is the parent (a snapshot's space): say so
        return
    raise NameTaken(f"{op.kind} {op.name!r} already exists")


@task(name="perform", cache_policy=NO_CACHE, task_run_name="{op.label}: perform")
def perform(op: ResourceOperation, resource: ResourceView) -> Status:
    try:
        status = op.perform(resource)
    except BaseException:
        # A task that fails is not rolled back by Prefect: undo partial work here.
        _safe_rollback(op, resource)
        raise
    txn = get_transaction()
    if txn is not None:
        txn.set("operation", op)
        txn.set("resource", resource)
    return status


@perform.on_rollback
def _rollback_perform(txn: Transaction) -> None:
    _safe_rollback(txn.get("operation"), txn.get("resource"))


@perform.on_commit
def _commit_perform(txn: Transaction) -> None:
    op: ResourceOperation = txn.get("operation")
    try:
        op.commit(txn.get("resource"))
    except Exception as exc:  # the operation succeeded; leftovers are reconcile's job
        get_run_logger().warning("%s: clean-up after commit failed: %s", op.label, exc)


def _safe_rollback(op: ResourceOperation, resource: ResourceView) -> None:
    try:
        op.rollback(resource)
    except Exception as exc:  # the original error matters more; say both
        get_run_logger().error("rollback of %s failed: %s", op.label, exc)


@task(name="post", cache_policy=NO_CACHE, task_run_name="{op.label}: post")
def post(op: ResourceOperation, resource: ResourceView, status: Status) -> ResourceView | None:
    """Record the status perform returned; None when the resource was hard-deleted."""
    owner = current_run_id()
    with session_scope(op.config.database_url) as session:
        if op.action is Action.DELETE and op.hard_delete and status is Status.ACTIVE:
            repository.hard_delete(session, resource.id)
            return None
        recorded = repository.release(
            session,
            resource.id,
            owner,
            status,
            name=op.new_name,
            spec=op.new_spec,
            state=op.new_state,
            deleted=False if op.action is Action.DELETE else None,
        )
    if recorded is None:
        raise RuntimeError(f"{op.label}: the resource was taken from this run before post")
    return recorded


def record_failure(
    op: ResourceOperation, resource: ResourceView, error: BaseException
) -> ResourceView | None:
    """ERRORED, with the error as the status message; a failed delete is not deleted."""
    with session_scope(op.config.database_url) as session:
        return repository.release(
            session,
            resource.id,
            current_run_id(),
            Status.ERRORED,
            message=f"{op.action.value} failed: {error}",
            deleted=False,
        )


# -- the skeleton -----------------------------------------------------------------


class OperationRun(HookedRun):
    """One operation in the hooked skeleton (tasks/skeleton.py)."""

    def __init__(self, op: ResourceOperation) -> None:
        self.op = op
        self.label = op.label
        self.func_name = op.func_name

    @property
    def hooks(self) -> HookSettings:
        return self.op.config.hooks

    def hook_context(self) -> HookContext:
        return HookContext(
            kind=self.op.kind,
            action=self.op.action.value,
            resource_name=self.op.name,
            flow_run_id=current_run_id(),
            flow_run_name=self.op.label,
            parameters=self.op.parameters(),
        )

    def steps(self) -> ActionResults:
        """pre, then perform and post in one transaction; a failure rolls back and
        marks the resource ERRORED."""
        op, logger = self.op, get_run_logger()
        op.lease = lease_seconds()
        resource = unwrap(pre(op, return_state=True), ResourceView)
        keeper = LeaseKeeper(op.config.database_url, resource.id, current_run_id(), op.lease)
        try:
            with keeper, transaction():
                status = perform(op, resource)
                recorded = post(op, resource, status)
        except Exception as exc:
            logger.error("%s failed: %s", op.label, exc)
            try:
                failed = record_failure(op, resource, exc)
            except DatabaseFault as fault:
                # Cannot say ERRORED now: the lock runs out with its lease and
                # reconcile settles the record.
                logger.error("%s: cannot record the failure: %s", op.label, fault)
                return ActionResults(status=Status.ERRORED, error=f"{exc}; {fault}")
            return ActionResults(
                status=Status.ERRORED,
                resource=None if failed is None else failed.model_dump(mode="json"),
                error=str(exc),
            )
        status = Status.DELETED if recorded is None else recorded.status
        logger.info("%s: %s", op.label, status.value)
        return ActionResults(
            status=status,
            resource=None if recorded is None else recorded.model_dump(mode="json"),
        )

    def record_replaced(self, before: ActionResults, after: ActionResults) -> None:
        """Make the database say what the post hook said."""
        if after.status is before.status or before.resource is None or after.status is None:
            return
        with session_scope(self.op.config.database_url) as session:
            repository.update_observed(
                session, before.resource["id"], status=after.status, message=after.message
            )

    def announce(self, results: ActionResults, state: State[Any]) -> None:
        """`storeflow.<kind>.<action>.<outcome>`; the resource on the run and the kind's
        inventory rewritten (unless refused: nothing changed); a space past its quota
        threshold warns."""
        op = self.op
        outcome = state.name or state.type.value
        inventory.emit_outcome(
            op.kind, op.action.value, op.name, outcome, results.resource, state.message
        )
        if results.refused:
            return
        tables = [inventory.inventory_table(op.config, op.kind)]
        if results.resource is not None:
            tables.append(inventory.resource_table(results.resource))
            if op.kind == "space":
                inventory.warn_if_over_quota(results.resource)
        if waits_for_announce():  # written while Prefect records the final state
            inventory.Pending.start(current_run_id(), tables)
        else:
            inventory.publish(tables)

    def final_state(self, results: ActionResults) -> State[Any]:
        """Named after the resource status: `Completed(name="Active")`."""
        label = self.op.label
        if results.refused:
            return Failed(name="Refused", message=f"{label} refused: {results.error}")
        status = results.status
        if status is None or status is Status.ERRORED:
            reason = results.error or results.message or "failed"
            return Failed(name=Status.ERRORED.state_name, message=f"{label}: {reason}")
        return Completed(
            name=status.state_name,
            message=results.message or f"{label}: {status.value}",
            data=results.resource,
        )


def waits_for_announce() -> bool:
    """Whether the current flow ends in `finish_announce` (every lifecycle flow does)."""
    context = FlowRunContext.get()
    flow = None if context is None else context.flow
    return flow is not None and finish_announce in flow.on_completion_hooks


def finish_announce(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A lifecycle flow's final-state hook: wait for the artifacts its announce started
    (the run's Artifacts tab and the inventory are written when the flow call returns);
    a failure to write them is a warning, the outcome stands."""
    try:
        inventory.Pending.finish(str(flow_run.id))
    except Exception as exc:
        logger = flow_run_logger(flow_run, flow)
        logger.warning("%s: telling the UI how it ended failed: %s", flow_run.name, exc)


def run_operation(op: ResourceOperation) -> State[Any]:
    """Run one operation through the skeleton; return the flow run's final state."""
    return run_hooked(OperationRun(op))
