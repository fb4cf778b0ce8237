"""`storeflow listener list|show|delete|submit`, `storeflow submission list|show` and
`storeflow listeners serve|key`: listeners known by their heartbeats, what was sent to
them, and the services they need."""

import json
from pathlib import Path

import typer
from rich.table import Table

from storeflow.blocks.config import resolve_config
from storeflow.cli.common import (
    ConfigOption,
    JsonOption,
    SubmitOption,
    fail,
    guarded,
    out,
    print_one,
    read_one,
)
from storeflow.models import listener_repository as listeners
from storeflow.models import submission_repository as submissions
from storeflow.models.db import session_scope
from storeflow.models.errors import StoreflowError
from storeflow.models.listener_repository import ListenerView
from storeflow.models.submissions import SubmissionStatus

listener_app = typer.Typer(
    help="Listeners: extractors known by their RabbitMQ heartbeats.", no_args_is_help=True
)


def _ago(view: ListenerView) -> str:
    return view.last_heartbeat.isoformat(timespec="seconds")


@listener_app.command("list")
def list_cmd(
    all_: bool = typer.Option(False, "--all", help="Deleted (inactive) listeners too."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List listeners."""
    with session_scope(resolve_config(config).database_url) as session:
        found = listeners.list_listeners(session, include_inactive=all_)
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in found]))
        return
    table = Table("id", "name", "version", "queue", "alive", "active", "last heartbeat", "feeds")
    for v in found:
        table.add_row(
            str(v.id),
            v.name,
            v.version,
            v.queue,
            "yes" if v.alive else "no",
            "yes" if v.active else "no",
            _ago(v),
            str(v.feeds),
        )
    out().print(table)


@listener_app.command("show")
def show_cmd(
    listener: str = typer.Argument(..., help="The listener's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one listener."""
    print_one(read_one(config, lambda session: listeners.find(session, listener)), as_json)


@listener_app.command("delete")
def delete_cmd(
    listener: str = typer.Argument(..., help="The listener's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Mark a listener inactive and unsubscribe it from every feed (its history stays)."""
    from storeflow.tasks.feeds import forget_listener

    try:
        resolved = resolve_config(config)
        with session_scope(resolved.database_url) as session:
            listener_id = listeners.find(session, listener).id
        forget_listener(resolved, listener_id)  # its automations deleted first
        with session_scope(resolved.database_url) as session:
            found = listeners.deactivate(session, listener)
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(found.model_dump_json())
    else:
        out().print(f"listener {found.name}: inactive")


def _parameters(pairs: list[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--param: {pair!r} is not KEY=VALUE")
        parsed[key] = value
    return parsed


@listener_app.command("submit")
def submit_cmd(
    listener: str = typer.Argument(..., help="The listener's name or id."),
    file: str = typer.Argument(..., help="A catalogued file: its id or path."),
    param: list[str] = typer.Option([], "--param", help="A parameter, KEY=VALUE (repeatable)."),
    timeout: int = typer.Option(3600, help="Seconds the listener has to finish."),
    submit_run: bool = SubmitOption,
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Submit a file to a listener: a run of `submit`, Submitted until the listener ends it."""
    from storeflow.cli.runner import run_here
    from storeflow.cli.runner import submit as submit_deployment
    from storeflow.flows.submissions import submit

    resource = file if file.isdigit() else str(Path(file).absolute())
    parameters = {
        "listener": listener,
        "resource": resource,
        "parameters": _parameters(param),
        "origin": "CLI",
        "timeout_seconds": timeout,
        "config": config,
    }
    if submit_run:
        outcome = guarded(lambda: submit_deployment(submit, parameters))
    else:
        outcome = guarded(lambda: run_here(submit, **parameters))
    if as_json:
        print(json.dumps(outcome.as_dict(), default=str))
    else:
        out().print(f"{outcome.flow_run_name}: {outcome.state_name}: {outcome.message or ''}")
    if outcome.state_type not in ("PAUSED", "COMPLETED", "SCHEDULED", "PENDING"):
        raise typer.Exit(1)


# -- submissions ---------------------------------------------------------------------

submission_app = typer.Typer(
    help="Submissions: files sent to listeners, each a run of `submit`.", no_args_is_help=True
)


@submission_app.command("list")
def submission_list_cmd(
    listener: str | None = typer.Option(None, "--listener", help="Only this listener's."),
    status: str | None = typer.Option(
        None, "--status", help="PENDING APPROVAL, SUBMITTED, SUCCESS or FAILURE."
    ),
    pending: bool = typer.Option(
        False, "--pending", help="Only those waiting for approval (--status PENDING APPROVAL)."
    ),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List submissions."""
    wanted = SubmissionStatus.PENDING_APPROVAL if pending else None
    if status is not None and pending:
        fail("status: give --status or --pending, not both")
    if status is not None:
        try:
            wanted = SubmissionStatus(status.upper())
        except ValueError:
            names = ", ".join(s.value for s in SubmissionStatus)
            fail(f"status: {status!r} is not one of {names}")
    try:
        with session_scope(resolve_config(config).database_url) as session:
            listener_id = listeners.find(session, listener).id if listener else None
            found = submissions.list_submissions(session, listener_id=listener_id, status=wanted)
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps([s.model_dump(mode="json") for s in found]))
        return
    table = Table("id", "listener", "resource", "origin", "status", "submitted", "message")
    for s in found:
        table.add_row(
            s.id,
            s.listener,
            f"{s.resource_type} #{s.resource_id}",
            s.origin,
            s.status.value,
            s.submitted_at.isoformat(timespec="seconds"),
            s.message or "",
        )
    out().print(table)


def _decide(submission_id: str, approve: bool, reason: str, config: str | None) -> None:
    """Resume a submission waiting for approval with a person's decision."""
    from uuid import UUID

    from prefect.flow_runs import resume_flow_run

    try:
        with session_scope(resolve_config(config).database_url) as session:
            found = submissions.get(session, submission_id, events=False)
    except StoreflowError as exc:
        fail(str(exc))
    if found.status is not SubmissionStatus.PENDING_APPROVAL:
        fail(f"submission: {submission_id} is {found.status.value}, not PENDING APPROVAL")
    try:
        resume_flow_run(UUID(found.id), run_input={"approve": approve, "reason": reason})
    except Exception as exc:  # the server's refusal, said in one line
        fail(f"submission: cannot resume run {found.id}: {exc}")
    out().print(f"submission {found.id}: {'approved' if approve else 'rejected'}")


@submission_app.command("approve")
def submission_approve_cmd(
    submission_id: str = typer.Argument(..., help="The submission's id (its flow run's id)."),
    config: str | None = ConfigOption,
) -> None:
    """Approve a submission waiting for approval: its run resumes and sends the job."""
    _decide(submission_id, True, "", config)


@submission_app.command("reject")
def submission_reject_cmd(
    submission_id: str = typer.Argument(..., help="The submission's id (its flow run's id)."),
    reason: str = typer.Option("", "--reason", help="Why (kept with the submission)."),
    config: str | None = ConfigOption,
) -> None:
    """Reject a submission waiting for approval: it ends Failed "Rejected", nothing sent."""
    _decide(submission_id, False, reason, config)


@submission_app.command("show")
def submission_show_cmd(
    submission_id: str = typer.Argument(..., help="The submission's id (its flow run's id)."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one submission and its events."""
    print_one(read_one(config, lambda session: submissions.get(session, submission_id)), as_json)


# -- the services --------------------------------------------------------------------

listeners_app = typer.Typer(
    help="The listener services: heartbeats, statuses, the HTTP API.", no_args_is_help=True
)


@listeners_app.command("serve")
def serve_cmd(
    host: str | None = typer.Option(None, help="API address (default: from STOREFLOW_API_URL)."),
    port: int | None = typer.Option(None, help="API port (default: from STOREFLOW_API_URL)."),
    match: bool = typer.Option(
        True,
        "--match/--no-match",
        help="Match file events against the feeds (storeflow.feed.matched for their "
        "subscriptions' automations).",
    ),
    config: str | None = ConfigOption,
) -> None:
    """Run the heartbeat and status consumers, the spaces' watcher, the feed matcher and
    the HTTP API until stopped."""
    from storeflow.models.listener_settings import ListenerSettings
    from storeflow.services.serve import serve_forever

    try:
        serve_forever(
            resolve_config(config), ListenerSettings.from_environment(), host, port, match=match
        )
    except KeyboardInterrupt:
        pass
    except (TimeoutError, OSError) as exc:
        fail(str(exc), code=1)


@listeners_app.command("key")
def key_cmd(
    user: str = typer.Argument(..., help="Who the key is for."),
    admin: bool = typer.Option(False, help="May delete listeners."),
    days: int | None = typer.Option(None, help="Expires after this many days."),
    config: str | None = ConfigOption,
) -> None:
    """Mint a user key for the listener API (printed once; only its hash is kept)."""
    from datetime import timedelta

    from storeflow.models import api_keys

    lifetime = timedelta(days=days) if days else None
    with session_scope(resolve_config(config).database_url) as session:
        print(api_keys.mint_user_key(session, user, admin=admin, lifetime=lifetime))
