"""`storeflow feed create|list|show|delete`: named criteria selecting files for listeners.

The criteria options are shared with `storeflow file search` (cli/files.py), whose
`--save-as NAME` makes the search a feed.
"""

import json
from typing import Any

import typer
from rich.table import Table

from storeflow.blocks.config import resolve_config
from storeflow.cli.common import (
    ConfigOption,
    JsonOption,
    fail,
    guarded,
    out,
    print_one,
    read_one,
)
from storeflow.models import feed_repository as feeds
from storeflow.models.bounds import MAX_DOCUMENT_BYTES, BoundError, parse_document
from storeflow.models.db import session_scope
from storeflow.models.errors import InvalidInput, StoreflowError
from storeflow.models.feed_criteria import parse_query
from storeflow.models.feed_repository import FeedView

feed_app = typer.Typer(
    help="Feeds: criteria that send matching files to subscribed listeners.",
    no_args_is_help=True,
)

CriteriaJson = typer.Option(None, "--criteria", help="The criteria as one JSON object.")
QueryOption = typer.Option(
    None, "--query", help="Clowder's query form: 'name:*.xlsx mime:image/* size>10MB'."
)
RegexOption = typer.Option(None, "--name-regex", help="Regular expression for the whole name.")
MimeOption = typer.Option(None, "--mime", help="MIME type, exact or type/*.")
SizeMinOption = typer.Option(None, "--size-min", help="Smallest size in bytes.")
SizeMaxOption = typer.Option(None, "--size-max", help="Largest size in bytes.")
SpaceOption = typer.Option(None, "--space", help="The space the file lies in.")
DatasetOption = typer.Option(None, "--dataset", help="The folder that holds the file.")
PrefixOption = typer.Option(None, "--path-prefix", help="The file's path starts with this.")
OwnerOption = typer.Option(None, "--owner", help="The file's owner user.")
GroupOption = typer.Option(None, "--group", help="The file's group.")
MetadataOption = typer.Option(
    None,
    "--metadata",
    help="PATH:equals:JSON, PATH:contains:JSON, PATH:exists, PATH:range:MIN:MAX (repeatable).",
)
AnyOption = typer.Option(False, "--any", help="A file meets any criterion (OR), not all.")


def _json_option(text: str, field: str) -> Any:
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(field, f"larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return parse_document(text.encode(), "json")
    except BoundError as exc:
        raise InvalidInput(field, f"{exc.field}: {exc.reason}") from None


def _metadata_condition(text: str, index: int) -> dict[str, Any]:
    field = f"--metadata.{index}"
    path, _, rest = text.partition(":")
    op, has_value, value = rest.partition(":")
    if not path or not op:
        raise InvalidInput(field, f"{text!r} is not PATH:OP[:VALUE]")
    condition: dict[str, Any] = {"path": path, "op": op}
    if op in ("equals", "contains") and has_value:
        try:
            condition["value"] = json.loads(value)
        except json.JSONDecodeError:
            condition["value"] = value  # a bare word is a string
    elif op == "range":
        low, _, high = value.partition(":")
        try:
            if low:
                condition["min"] = float(low)
            if high:
                condition["max"] = float(high)
        except ValueError:
            raise InvalidInput(field, f"{value!r} is not MIN:MAX") from None
    return condition


def criteria_from_options(
    *,
    criteria_json: str | None,
    query: str | None,
    name_regex: str | None,
    mime: str | None,
    size_min: int | None,
    size_max: int | None,
    space: str | None,
    dataset: str | None,
    path_prefix: str | None,
    owner: str | None,
    group: str | None,
    metadata: list[str] | None,
    any_: bool,
) -> dict[str, Any]:
    """The criteria JSON the options describe (checked later, when parsed)."""
    criteria: dict[str, Any] = {}
    if criteria_json is not None:
        given = _json_option(criteria_json, "--criteria")
        if not isinstance(given, dict):
            raise InvalidInput("--criteria", "must be a JSON object")
        criteria.update(given)
    if query is not None:
        criteria.update(parse_query(query))
    options = {
        "name": name_regex,
        "mime": mime,
        "size_min": size_min,
        "size_max": size_max,
        "space": space,
        "dataset": dataset,
        "path_prefix": path_prefix,
        "owner": owner,
        "group": group,
    }
    criteria.update({k: v for k, v in options.items() if v is not None})
    if metadata:
        criteria["metadata"] = [_metadata_condition(m, i) for i, m in enumerate(metadata)]
    if any_:
        criteria["op"] = "or"
    return criteria


def _table(found: list[FeedView]) -> Table:
    table = Table("id", "name", "kind", "criteria", "approval", "listeners")
    for f in found:
        table.add_row(
            str(f.id),
            f.name,
            f.kind.value,
            json.dumps(f.criteria) if f.criteria else "(every file)",
            "yes" if f.approval else "no",
            ", ".join(s.listener for s in f.subscriptions) or "-",
        )
    return table


@feed_app.command("create")
def create_cmd(
    name: str = typer.Argument(..., help="The feed's name."),
    criteria_json: str | None = CriteriaJson,
    query: str | None = QueryOption,
    name_regex: str | None = RegexOption,
    mime: str | None = MimeOption,
    size_min: int | None = SizeMinOption,
    size_max: int | None = SizeMaxOption,
    space: str | None = SpaceOption,
    dataset: str | None = DatasetOption,
    path_prefix: str | None = PrefixOption,
    owner: str | None = OwnerOption,
    group: str | None = GroupOption,
    metadata: list[str] | None = MetadataOption,
    any_: bool = AnyOption,
    kind: str = typer.Option(
        "file", "--kind", help="file, or dataset (--criteria '{\"files\": [...]}')."
    ),
    parameters: str | None = typer.Option(
        None, "--parameters", help="Job parameters (JSON) for its submissions."
    ),
    approval: bool = typer.Option(False, "--approval", help="Submissions wait for approval."),
    description: str = typer.Option("", "--description", help="What the feed is for."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a feed; a mistake names the field and creates nothing."""
    try:
        if kind == "dataset":
            criteria: dict[str, Any] = (
                _json_option(criteria_json, "--criteria") if criteria_json else {}
            )
        else:
            criteria = criteria_from_options(
                criteria_json=criteria_json,
                query=query,
                name_regex=name_regex,
                mime=mime,
                size_min=size_min,
                size_max=size_max,
                space=space,
                dataset=dataset,
                path_prefix=path_prefix,
                owner=owner,
                group=group,
                metadata=metadata,
                any_=any_,
            )
        params = _json_option(parameters, "--parameters") if parameters else {}
        with session_scope(resolve_config(config).database_url) as session:
            feed = feeds.create(
                session,
                name,
                criteria,
                kind=kind,
                parameters=params,
                approval=approval,
                description=description,
            )
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(feed.model_dump_json())
    else:
        out().print(f"feed #{feed.id} {feed.name} created")


@feed_app.command("list")
def list_cmd(
    listener: str | None = typer.Option(None, help="Only feeds this listener subscribes to."),
    skip: int = typer.Option(0, min=0, max=2**31 - 1),
    limit: int | None = typer.Option(None, min=1, max=2**31 - 1),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List feeds."""
    from storeflow.models import listener_repository as listeners

    try:
        with session_scope(resolve_config(config).database_url) as session:
            listener_id = listeners.find(session, listener).id if listener else None
            found = feeds.list_feeds(session, listener_id=listener_id, skip=skip, limit=limit)
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps([f.model_dump(mode="json") for f in found]))
    else:
        out().print(_table(found))


@feed_app.command("show")
def show_cmd(
    feed: str = typer.Argument(..., help="The feed's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one feed and its subscriptions."""
    print_one(read_one(config, lambda session: feeds.find(session, feed)), as_json)


@feed_app.command("delete")
def delete_cmd(
    feed: str = typer.Argument(..., help="The feed's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a feed: its subscriptions and their automations go with it."""
    from storeflow.tasks.feeds import delete_feed

    found = guarded(lambda: delete_feed(resolve_config(config), feed))
    if as_json:
        print(found.model_dump_json())
    else:
        out().print(f"feed #{found.id} {found.name} deleted")


@feed_app.command("subscribe")
def subscribe_cmd(
    feed: str = typer.Argument(..., help="The feed's name or id."),
    listener: str = typer.Argument(..., help="The listener's name or id."),
    auto: bool = typer.Option(
        True, "--auto/--no-auto", help="An automation submits each new match."
    ),
    backfill: bool = typer.Option(
        False, "--backfill", help="Also submit the matching files the catalog holds."
    ),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Subscribe a listener to a feed (an automation in the UI's Automations)."""
    from storeflow.tasks import feeds as feed_steps

    resolved = resolve_config(config)
    try:
        done = feed_steps.subscribe(resolved, feed, listener, auto=auto)
        sent = feed_steps.backfill(resolved, feed, listener) if backfill else 0
    except StoreflowError as exc:
        fail(str(exc))
    shown = {**done.subscription.model_dump(mode="json"), "created": done.created, "sent": sent}
    if as_json:
        print(json.dumps(shown))
    else:
        what = "subscribed" if done.created else "already subscribed"
        automation = done.subscription.automation_id or "none (auto off)"
        out().print(f"{listener} {what} to {feed}; automation {automation}; {sent} sent")


@feed_app.command("unsubscribe")
def unsubscribe_cmd(
    feed: str = typer.Argument(..., help="The feed's name or id."),
    listener: str = typer.Argument(..., help="The listener's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Unsubscribe a listener from a feed (its automation is deleted)."""
    from storeflow.tasks import feeds as feed_steps

    removed = guarded(lambda: feed_steps.unsubscribe(resolve_config(config), feed, listener))
    if as_json:
        print(removed.model_dump_json())
    else:
        out().print(f"{removed.listener} unsubscribed from feed #{removed.feed_id}")


@feed_app.command("execute")
def execute_cmd(
    feed: str = typer.Argument(..., help="The feed's name or id."),
    listener: str = typer.Argument(..., help="The listener's name or id."),
    force_all: bool = typer.Option(False, "--force-all", help="Files already sent too."),
    skip: int = typer.Option(0, min=0, max=2**31 - 1),
    limit: int | None = typer.Option(None, min=1, max=2**31 - 1),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Submit the feed's matching files to the listener now; prints the count sent."""
    from storeflow.tasks import feeds as feed_steps

    sent = guarded(
        lambda: feed_steps.execute(
            resolve_config(config), feed, listener, force_all=force_all, skip=skip, limit=limit
        )
    )
    print(json.dumps({"sent": sent}) if as_json else f"{sent} sent")


@feed_app.command("counts")
def counts_cmd(
    feed: str = typer.Argument(..., help="The feed's name or id."),
    listener: str = typer.Argument(..., help="The listener's name or id."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """How the feed's files stand at the listener."""
    from storeflow.tasks import feeds as feed_steps

    found = guarded(lambda: feed_steps.counts(resolve_config(config), feed, listener))
    if as_json:
        print(found.model_dump_json())
        return
    table = Table(*found.model_dump())
    table.add_row(*(str(v) for v in found.model_dump().values()))
    out().print(table)
