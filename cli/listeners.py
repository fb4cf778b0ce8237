"""`storeflow listener list|show|delete`: listeners known by their heartbeats."""

import json

import typer
from rich.table import Table

from storeflow.blocks.config import resolve_config
from storeflow.cli.common import ConfigOption, JsonOption, fail, out
from storeflow.models import listener_repository as listeners
from storeflow.models.db import session_scope
from storeflow.models.errors import StoreflowError
from storeflow.models.listener_repository import ListenerView

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
    try:
        with session_scope(resolve_config(config).database_url) as session:
            found = listeners.find(session, listener)
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(found.model_dump_json())
    else:
        out().print_json(found.model_dump_json())


@listener_app.command("delete")
def delete_cmd(
    listener: str = typer.Argument(..., help="The listener's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Mark a listener inactive and unsubscribe it from every feed (its history stays)."""
    try:
        with session_scope(resolve_config(config).database_url) as session:
            found = listeners.deactivate(session, listener)
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(found.model_dump_json())
    else:
        out().print(f"listener {found.name}: inactive")
