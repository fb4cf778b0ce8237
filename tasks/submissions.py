"""The steps of a submission: validate, send the job, record what the listener says,
end it.

The job is Clowder's job message, so that a stock pyclowder extractor processes it
unmodified; the replies are parsed in the form pyclowder sends them.  `finish` is
the post step, whoever ends the submission (the status consumer on the listener's
last word, or its timeout sweep): the outcome recorded, the key revoked.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pika
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from storeflow.models import api_keys
from storeflow.models import catalog_repository as catalog
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog import FileRow
from storeflow.models.catalog_repository import FileView
from storeflow.models.errors import InvalidInput, NotFound, StoreflowError
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submission_repository import SubmissionView
from storeflow.models.submissions import SubmissionEventRow, SubmissionStatus

# pyclowder's StatusMessage values, as they arrive in `message_type`.
START, PROCESSING, DONE, SKIP, ERROR, RETRY = (
    "StatusMessage.start",
    "StatusMessage.processing",
    "StatusMessage.done",
    "StatusMessage.skip",
    "StatusMessage.error",
    "StatusMessage.retry",
)
KINDS = (START, PROCESSING, DONE, SKIP, ERROR, RETRY)
SUBMITTED_EVENT = "storeflow.submitted"
# The listener was handed the submission's file (or dataset) through the API.
DOWNLOAD_EVENT = "storeflow.download"
# A delivery of the job asked for its file again without pyclowder having retried it:
# the broker redelivered a job the listener lost (it died, or lost its broker).
REDELIVERED_EVENT = "storeflow.redelivered"
LOST_MESSAGE = (
    "the listener lost the job after it had been handed its {what} (the broker "
    "redelivered it); it is not run a second time"
)


def dataset_id(folder: str) -> str:
    """A dataset's id on the wire: stable, URL-safe, and no path given away."""
    return hashlib.sha256(folder.encode()).hexdigest()[:24]


# -- parameters ----------------------------------------------------------------------


def declared_parameters(listener: ListenerView) -> dict[str, dict[str, Any]]:
    """The parameters a listener declares: `extractor_info.parameters.schema` (Clowder
    v2's form), or the mapping itself when it has no `schema` key."""
    declared = listener.parameters.get("schema", listener.parameters)
    if not isinstance(declared, dict):
        return {}
    return {k: v if isinstance(v, dict) else {} for k, v in declared.items()}


def _coerce(name: str, value: Any, spec: dict[str, Any]) -> Any:
    kind = spec.get("type", "string")
    try:
        if kind == "integer":
            value = int(value)
        elif kind == "number":
            value = float(value)
        elif kind == "boolean":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            value = bool(value)
        elif kind == "string":
            value = str(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"parameters.{name}", f"{value!r} is not a {kind}") from None
    if "enum" in spec and value not in spec["enum"]:
        raise InvalidInput(f"parameters.{name}", f"{value!r} is not one of {spec['enum']}")
    return value


def validate_parameters(listener: ListenerView, given: dict[str, Any]) -> dict[str, Any]:
    """The parameters as the listener declares them; InvalidInput naming the first bad one."""
    declared = declared_parameters(listener)
    checked: dict[str, Any] = {}
    for name, value in given.items():
        if name not in declared:
            takes = ", ".join(declared) or "none"
            raise InvalidInput(
                f"parameters.{name}", f"not a parameter of {listener.name} (it takes: {takes})"
            )
        checked[name] = _coerce(name, value, declared[name])
    for name, spec in declared.items():
        if spec.get("required") is True and name not in checked:
            raise InvalidInput(f"parameters.{name}", f"required by {listener.name}")
    return checked


# -- the request and the job ---------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a submission is for: a catalogued file, or a dataset (a folder of
    catalogued files, Clowder's dataset)."""

    listener: ListenerView
    file: FileView | None = None
    dataset: str | None = None  # the folder, for a dataset submission

    @property
    def resource_type(self) -> str:
        return "file" if self.file is not None else "dataset"

    @property
    def name(self) -> str:
        """The file's name, or the dataset's (its folder's)."""
        return self.file.name if self.file is not None else Path(str(self.dataset)).name

    @property
    def resource_id(self) -> str:
        """What the submission records: the file's id, or the dataset's folder."""
        if self.file is not None:
            return str(self.file.id)
        return str(self.dataset)


def find_dataset(session: Session, ref: str) -> str | None:
    """The folder of a dataset given as its folder (a path) or its wire id; None if no
    catalogued file lies directly in it."""
    if ref.startswith("/"):
        folder = str(Path(ref).resolve())
        return folder if catalog.list_files(session, dataset=folder, limit=1) else None
    for folder in session.scalars(select(FileRow.dataset).distinct()):
        if dataset_id(folder) == ref:
            return folder
    return None


def processes_datasets(listener: ListenerView) -> bool:
    """Whether the listener's extractor_info declares dataset processing (pyclowder
    builds a dataset resource only for an extractor whose `process` names datasets)."""
    process = listener.extractor_info.get("process")
    return not isinstance(process, dict) or "dataset" in process


def resolve(session: Session, listener_ref: str, resource: str, resource_type: str) -> Target:
    """The listener and the resource a submission is for (active listener; a catalogued
    file, or a dataset).  `file` given a folder that is a dataset (as
    `storeflow listener submit LISTENER FOLDER` gives it) submits the dataset."""
    try:
        listener = listeners.find(session, listener_ref)
    except NotFound as exc:
        raise InvalidInput("listener", str(exc)) from None
    if not listener.active:
        raise InvalidInput("listener", f"{listener.name} was deleted (inactive)")
    if resource_type not in ("file", "dataset"):
        raise InvalidInput("resource_type", f"{resource_type!r} is not file or dataset")
    if resource_type == "file":
        try:
            return Target(listener, file=catalog.find(session, resource))
        except NotFound as exc:
            folder = find_dataset(session, resource) if Path(resource).is_dir() else None
            if folder is None:
                raise InvalidInput("resource", str(exc)) from None
    else:
        found = find_dataset(session, resource)
        if found is None:
            raise InvalidInput("resource", f"dataset {resource!r} has no catalogued file")
        folder = found
    if not processes_datasets(listener):
        raise InvalidInput(
            "resource_type", f"{listener.name} does not process datasets (its extractor_info)"
        )
    return Target(listener, dataset=folder)


def job_message(
    submission: SubmissionView, target: Target, *, host: str, secret_key: str
) -> dict[str, Any]:
    """Clowder's job message for a file or a dataset (never without `host`: it wedges
    pyclowder).  A dataset's job carries the dataset's id as both `id` and
    `datasetId`, as Clowder's dataset jobs do."""
    if not host:
        raise InvalidInput("host", "the API URL extractors call back is empty")
    common = {
        "host": host,
        "secretKey": secret_key,
        "retry_count": 0,
        "resource_type": target.resource_type,
        "flags": "",
        "job_id": submission.id,
        "parameters": submission.parameters,
    }
    if target.file is not None:
        file = target.file
        return {
            **common,
            "filename": file.name,
            "fileSize": file.size,
            "id": str(file.id),
            "datasetId": dataset_id(file.dataset),
        }
    folder = str(target.dataset)
    return {
        **common,
        "datasetName": Path(folder).name,
        "id": dataset_id(folder),
        "datasetId": dataset_id(folder),
    }


def job_properties(submission_id: str, reply_to: str) -> pika.BasicProperties:
    return pika.BasicProperties(
        delivery_mode=2,
        content_type="application/json",
        reply_to=reply_to,
        correlation_id=submission_id,
    )


def key_lifetime(submission: SubmissionView) -> timedelta:
    return timedelta(seconds=submission.timeout_seconds)


def mint_key(session: Session, submission: SubmissionView, target: Target) -> str:
    """A fresh key for the job (a re-sent job revokes the earlier one first): a file's
    key grants the file (and uploads into its folder), a dataset's the dataset."""
    api_keys.revoke_for_submission(session, submission.id)
    return api_keys.mint_submission_key(
        session,
        submission.id,
        file_id=target.file.id if target.file is not None else None,
        dataset=target.file.dataset if target.file is not None else target.dataset,
        lifetime=key_lifetime(submission),
    )


# -- replies -------------------------------------------------------------------------


class Reply(BaseModel):
    """A status message as pyclowder's RabbitMQHandler.status_update sends it."""

    job_id: str | None = None
    file_id: str | None = None
    extractor_id: str | None = None
    status: str = ""
    start: str | None = None
    message_type: str
    message: str = ""


def parse_reply(body: bytes, correlation_id: str | None) -> tuple[str, Reply]:
    """(submission id, reply); InvalidInput naming the field if malformed."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput("reply", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("reply", "not a JSON object")
    try:
        reply = Reply.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"reply.{'.'.join(map(str, first['loc']))}", first["msg"]) from None
    if reply.message_type not in KINDS:
        raise InvalidInput("reply.message_type", f"{reply.message_type!r} is not a StatusMessage")
    # pyclowder's retried jobs lose the correlation id; the job id stays in the body.
    submission_id = reply.job_id or correlation_id
    if not submission_id:
        raise InvalidInput("reply.job_id", "missing (and no correlation_id)")
    return submission_id, reply


def text_of(reply: Reply) -> str:
    """The reply's message: `message`, else the text after `StatusMessage.x: `."""
    if reply.message:
        return reply.message
    prefix = f"{reply.message_type}: "
    return reply.status.removeprefix(prefix) if reply.status.startswith(prefix) else reply.status


def outcome_of(reply: Reply) -> SubmissionStatus | None:
    if reply.message_type == DONE:
        return SubmissionStatus.SUCCESS
    if reply.message_type == ERROR:
        return SubmissionStatus.FAILURE
    return None  # start, processing, skip, retry: still running


def progress_of(reply: Reply) -> int | None:
    return {START: 0, DONE: 100}.get(reply.message_type)


# -- at most once: a redelivered job is not run again ---------------------------------
#
# RabbitMQ delivers a job again when the listener that had it goes away before acking
# it (killed, or its broker restarted): possibly after it did the work and before its
# `done` went out.  pyclowder cannot tell a redelivery from a first delivery, so the
# API does: each delivery of a job downloads its resource once, and pyclowder's own
# retries announce themselves with a `retry` reply first.  A download beyond
# (1 + retries) is a redelivery: refused, and the submission ends Failure on the
# listener's next reply, instead of running twice.


def claim_download(session: Session, submission_id: str, what: str) -> bool:
    """Record that the listener is handed the submission's resource; False (nothing
    recorded) when an earlier delivery already had it and pyclowder has not retried."""
    kinds = [e.kind for e in submissions.events_of(session, submission_id)]
    if kinds.count(DOWNLOAD_EVENT) > kinds.count(RETRY):
        return False
    submissions.record_event(
        session, submission_id, kind=DOWNLOAD_EVENT, message=f"{what} handed to the listener"
    )
    return True


def mark_redelivered(session: Session, submission_id: str, what: str) -> None:
    submissions.record_event(
        session, submission_id, kind=REDELIVERED_EVENT, message=LOST_MESSAGE.format(what=what)
    )


def _redelivered(session: Session, submission_ids: list[str]) -> dict[str, str]:
    """Submissions whose job was refused as a redelivery: their last such message."""
    if not submission_ids:
        return {}
    query = select(SubmissionEventRow.submission_id, SubmissionEventRow.message).where(
        SubmissionEventRow.submission_id.in_(submission_ids),
        SubmissionEventRow.kind == REDELIVERED_EVENT,
    )
    return dict(session.execute(query).tuples().all())


def record_replies(session: Session, replies: list[tuple[str, Reply]]) -> submissions.Recorded:
    """Store replies as events of their submissions, in one transaction; `done` and
    `error` end a submission (the post step: its key revoked).  A reply for a
    submission that had ended is ignored.  The `retry` or `error` that follows a
    refused redelivery ends its submission Failure."""
    failing = [sid for sid, reply in replies if reply.message_type in (RETRY, ERROR)]
    lost = _redelivered(session, failing)
    recorded = submissions.record_events(
        session,
        [
            submissions.NewEvent(
                submission_id=sid,
                kind=reply.message_type,
                message=lost.get(sid, text_of(reply))
                if reply.message_type in (RETRY, ERROR)
                else text_of(reply),
                outcome=SubmissionStatus.FAILURE
                if sid in lost and reply.message_type in (RETRY, ERROR)
                else outcome_of(reply),
                progress=progress_of(reply),
            )
            for sid, reply in replies
        ],
    )
    for submission_id in recorded.ended:
        api_keys.revoke_for_submission(session, submission_id)
    return recorded


class NotSent(StoreflowError):
    """The job could not be handed to the broker: the submission ended Failure."""


def not_sent(session: Session, submission_id: str, queue: str, error: BaseException) -> str:
    """End a submission whose job the broker never took; the reason."""
    reason = f"job not sent to queue {queue}: {error or type(error).__name__}"
    if (
        submissions.record_event(
            session,
            submission_id,
            kind="storeflow.not-sent",
            message=reason,
            outcome=SubmissionStatus.FAILURE,
        )
        is not None
    ):
        api_keys.revoke_for_submission(session, submission_id)
    return reason


def expire(session: Session, submission_id: str) -> SubmissionView | None:
    """End a submission whose listener did not answer within its timeout."""
    row = submissions.get(session, submission_id, events=False)
    recorded = submissions.record_event(
        session,
        submission_id,
        kind="storeflow.timeout",
        message=f"no final reply from {row.listener} within {row.timeout_seconds} s",
        outcome=SubmissionStatus.FAILURE,
    )
    if recorded is not None:
        api_keys.revoke_for_submission(session, submission_id)
    return recorded
