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
from typing import Any

import pika
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from storeflow.models import api_keys
from storeflow.models import catalog_repository as catalog
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.catalog_repository import FileView
from storeflow.models.errors import InvalidInput, NotFound
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submission_repository import SubmissionView
from storeflow.models.submissions import SubmissionStatus

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
    listener: ListenerView
    file: FileView


def resolve(session: Session, listener_ref: str, resource: str, resource_type: str) -> Target:
    """The listener and the file a submission is for (active listener, catalogued file)."""
    try:
        listener = listeners.find(session, listener_ref)
    except NotFound as exc:
        raise InvalidInput("listener", str(exc)) from None
    if not listener.active:
        raise InvalidInput("listener", f"{listener.name} was deleted (inactive)")
    if resource_type != "file":
        # Datasets are sent by their triggering file (pyclowder's dataset jobs need the
        # dataset routes, which come with the feeds issue).
        raise InvalidInput("resource_type", f"{resource_type!r}: only files are submitted yet")
    try:
        file = catalog.find(session, resource)
    except NotFound as exc:
        raise InvalidInput("resource", str(exc)) from None
    return Target(listener, file)


def job_message(
    submission: SubmissionView, file: FileView, *, host: str, secret_key: str
) -> dict[str, Any]:
    """Clowder's job message for one file (never without `host`: it wedges pyclowder)."""
    if not host:
        raise InvalidInput("host", "the API URL extractors call back is empty")
    return {
        "host": host,
        "secretKey": secret_key,
        "retry_count": 0,
        "resource_type": submission.resource_type,
        "flags": "",
        "filename": file.name,
        "fileSize": file.size,
        "id": str(file.id),
        "datasetId": dataset_id(file.dataset),
        "job_id": submission.id,
        "parameters": submission.parameters,
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


def mint_key(session: Session, submission: SubmissionView, file: FileView) -> str:
    """A fresh key for the job (a re-sent job revokes the earlier one first)."""
    api_keys.revoke_for_submission(session, submission.id)
    return api_keys.mint_submission_key(
        session,
        submission.id,
        file_id=file.id,
        dataset=file.dataset,
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


def record_replies(session: Session, replies: list[tuple[str, Reply]]) -> submissions.Recorded:
    """Store replies as events of their submissions, in one transaction; `done` and
    `error` end a submission (the post step: its key revoked).  A reply for a
    submission that had ended is ignored."""
    recorded = submissions.record_events(
        session,
        [
            submissions.NewEvent(
                submission_id=sid,
                kind=reply.message_type,
                message=text_of(reply),
                outcome=outcome_of(reply),
                progress=progress_of(reply),
            )
            for sid, reply in replies
        ],
    )
    for submission_id in recorded.ended:
        api_keys.revoke_for_submission(session, submission_id)
    return recorded


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
