"""The `submit` deployment: a run is a submission of one file to one listener.

The run validates the request, records the submission, sends Clowder's job message to
the listener's queue, and parks as `Paused(name="Submitted")`: it then holds no worker
slot and no process while the listener works, for seconds or hours.  The status
consumer (services/status.py) records the listener's replies and sets the run's
final state: `Completed(name="Success")` or `Failed(name="Failure")`.  A request that
cannot be submitted ends `Failed(name="Refused")`, nothing sent.

A run for a feed (`feed` given: an automation's, `execute`'s, a backfill's) takes the
feed's job parameters and is the one submission of that file for that feed to that
listener: a second run for the same delivery ends `Completed(name="Duplicate")`,
nothing sent.  If the feed needs approval, the run is suspended (PENDING APPROVAL: no
worker slot, no process) until a person resumes it with an `Approval` input from the
UI's Resume form or `storeflow submission approve|reject`; resumed, it runs again from
the top (every step before is idempotent) and either sends the job or ends
`Failed(name="Rejected")` with nothing sent.
"""

import json
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_progress_artifact
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, Paused, State

from storeflow.blocks.config import resolve_config
from storeflow.flows.common import note_run_name
from storeflow.models import catalog_repository as catalog
from storeflow.models import feed_repository as feeds
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput, StoreflowError
from storeflow.models.listener_settings import ListenerSettings
from storeflow.models.submission_repository import SubmissionView
from storeflow.models.submissions import Origin, SubmissionStatus
from storeflow.tasks import submissions as steps
from storeflow.tasks.broker import BROKER_ERRORS, Publisher

DEFAULT_TIMEOUT = 3600

SUBMITTED_STATE = "Submitted"
PENDING_APPROVAL_STATE = "Pending Approval"
APPROVAL_KEY = "approval"
#: How long a submission waits for a person's decision before its run times out.
APPROVAL_TIMEOUT = 30 * 24 * 3600


class Approval(RunInput):
    """A person's decision on a submission that waits for approval."""

    approve: bool
    reason: str = ""


class Duplicate(StoreflowError):
    """Another run is already this feed's submission of this file to this listener."""


def _run_name() -> str:
    """`<listener> on <file name>`: how a submission reads in the UI."""
    params = flow_run.parameters
    resource = str(params.get("resource", ""))
    try:
        with session_scope(resolve_config(params.get("config")).database_url) as session:
            resource = catalog.find(session, resource).name
    except StoreflowError:
        pass
    return f"{params.get('listener')} on {resource}"


@task(name="prepare")
def prepare(
    run_id: str,
    listener: str,
    resource: str,
    resource_type: str,
    parameters: dict[str, Any],
    origin: str,
    timeout_seconds: int,
    database_url: str,
    feed: str | None = None,
) -> SubmissionView | str:
    """The submission, or why it is refused (one line naming the field)."""
    try:
        return _prepare(
            run_id,
            listener,
            resource,
            resource_type,
            parameters,
            origin,
            timeout_seconds,
            database_url,
            feed,
        )
    except Duplicate:
        raise
    except StoreflowError as exc:
        return str(exc)


def _prepare(
    run_id: str,
    listener: str,
    resource: str,
    resource_type: str,
    parameters: dict[str, Any],
    origin: str,
    timeout_seconds: int,
    database_url: str,
    feed: str | None = None,
) -> SubmissionView:
    """Validate the request and record the submission (once per run)."""
    try:
        origin_value = Origin(origin)
    except ValueError:
        raise InvalidInput(
            "origin", f"{origin!r} is not one of {', '.join(o.value for o in Origin)}"
        ) from None
    if timeout_seconds <= 0:
        raise InvalidInput("timeout_seconds", "must be positive")
    with session_scope(database_url) as session:
        target = steps.resolve(session, listener, resource, resource_type)
        status = SubmissionStatus.SUBMITTED
        if feed is not None:
            try:
                found = feeds.find(session, feed)
            except StoreflowError as exc:
                raise InvalidInput("feed", str(exc)) from None
            parameters = {**found.parameters, **parameters}
            if found.approval:
                status = SubmissionStatus.PENDING_APPROVAL
            resource_key = target.resource_id
            if not feeds.bind_submission(
                session, found.id, target.listener.id, resource_key, run_id
            ):
                raise Duplicate(
                    f"{target.name} was already submitted to {target.listener.name} "
                    f"for feed {found.name}"
                )
        checked = steps.validate_parameters(target.listener, parameters)
        submission, _ = submissions.create(
            session,
            run_id,
            listener_id=target.listener.id,
            resource_type=target.resource_type,
            resource_id=target.resource_id,
            origin=origin_value,
            parameters=checked,
            timeout_seconds=timeout_seconds,
            status=status,
        )
    return submission


def _await_approval(submission: SubmissionView, database_url: str) -> str | None:
    """Suspend until a person decides (this returns only on the run's second start,
    resumed); None when approved, else the reason it was rejected (recorded)."""
    decision = suspend_flow_run(wait_for_input=Approval, key=APPROVAL_KEY, timeout=APPROVAL_TIMEOUT)
    with session_scope(database_url) as session:
        if decision.approve:
            feeds.approve_submission(session, submission.id)
            submissions.record_event(
                session, submission.id, kind="storeflow.approved", message="approved"
            )
            return None
        reason = decision.reason or "rejected"
        submissions.record_event(
            session,
            submission.id,
            kind="storeflow.rejected",
            message=f"rejected: {reason}",
            outcome=SubmissionStatus.FAILURE,
        )
    return reason


@task(name="send-job")
def send_job(submission: SubmissionView, database_url: str, settings: ListenerSettings) -> str:
    """Mint the submission's key and publish the job (unless this run already did)."""
    with session_scope(database_url) as session:
        if any(
            e.kind == steps.SUBMITTED_EVENT for e in submissions.events_of(session, submission.id)
        ):
            return "job already sent"
        target = steps.resolve(
            session, submission.listener, submission.resource_id, submission.resource_type
        )
        key = steps.mint_key(session, submission, target)
        job = steps.job_message(submission, target, host=settings.api_url, secret_key=key)
        queue = target.listener.queue
        message = f"job sent to queue {queue}"
        # Committed before the job goes out: a listener calls the API with the key (and
        # replies) as soon as it has the job, which can be before the broker's confirm
        # reaches us.
        submissions.record_event(
            session, submission.id, kind=steps.SUBMITTED_EVENT, message=message
        )
    publisher = Publisher(settings.broker_url)
    try:
        # Declared with the flags pyclowder uses (durable, no arguments), so that a job
        # waits for a listener that is not running yet.
        publisher.declare_queue(queue)
        publisher.publish(
            queue,
            json.dumps(job).encode(),
            steps.job_properties(submission.id, settings.reply_queue),
        )
    except BROKER_ERRORS as exc:
        # The broker stayed away longer than the publisher waits: the submission ends
        # here (its key revoked), rather than wait for a job nobody will get.
        with session_scope(database_url) as session:
            reason = steps.not_sent(session, submission.id, queue, exc)
        raise steps.NotSent(reason) from exc
    finally:
        publisher.close()
    return message


@flow(name="submit", flow_run_name=_run_name, persist_result=False)
def submit(
    listener: str,
    resource: str,
    resource_type: str = "file",
    parameters: dict[str, Any] | None = None,
    origin: str = "API",
    timeout_seconds: int = DEFAULT_TIMEOUT,
    config: str | None = None,
    feed: str | None = None,
) -> State[Any]:
    """Submit a catalogued file (id or path), or a dataset (`resource_type="dataset"`, or
    a folder holding catalogued files; by its folder or its id), to a listener (name or
    id), for a feed (name or id) when `feed` is given."""
    note_run_name()
    run_id = str(flow_run.get_id())
    database_url = resolve_config(config).database_url
    try:
        submission = prepare(
            run_id,
            listener,
            resource,
            resource_type,
            parameters or {},
            origin,
            timeout_seconds,
            database_url,
            feed,
        )
    except Duplicate as exc:
        return Completed(name="Duplicate", message=str(exc))
    if isinstance(submission, str):
        return Failed(name="Refused", message=submission)
    if submission.status is SubmissionStatus.PENDING_APPROVAL:
        rejected = _await_approval(submission, database_url)
        if rejected is not None:
            return Failed(name="Rejected", message=f"rejected: {rejected}")
        submission = submission.model_copy(update={"status": SubmissionStatus.SUBMITTED})
    if submission.status is SubmissionStatus.SUCCESS:
        return Completed(name="Success", message=submission.message)
    if submission.status is SubmissionStatus.FAILURE:
        return Failed(name="Failure", message=submission.message)
    try:
        message = send_job(submission, database_url, ListenerSettings.from_environment())
    except steps.NotSent as exc:
        return Failed(name="Failure", message=str(exc))
    create_progress_artifact(0.0, description=f"{submission.listener}: progress")
    # No reschedule: nothing re-runs this flow; the status consumer sets its outcome.
    return Paused(name=SUBMITTED_STATE, message=message)
