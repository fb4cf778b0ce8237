"""`storeflow file register|list|show|scan|search`: the file catalog."""

import json
from pathlib import Path

import typer
from rich.table import Table

from storeflow.blocks.config import resolve_config
from storeflow.cli import feeds as feed_options
from storeflow.cli.common import ConfigOption, JsonOption, fail, out
from storeflow.models import catalog_repository as catalog
from storeflow.models.db import session_scope
from storeflow.models.errors import StoreflowError
from storeflow.models.names import format_size

file_app = typer.Typer(help="The file catalog: files listeners work on.", no_args_is_help=True)


@file_app.command("register")
def register_cmd(
    path: Path,
    checksum: bool = typer.Option(True, help="Compute the file's SHA-256."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Record a file in the catalog (an event if it is new or changed)."""
    from storeflow.tasks.catalog import register  # imports Prefect's events

    try:
        file, change = register(resolve_config(config), path, checksum=checksum)
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps({"change": change.value, "file": file.model_dump(mode="json")}))
    else:
        out().print(f"file #{file.id} {file.path}: {change.value} ({file.mime_type})")


@file_app.command("list")
def list_cmd(
    space: str | None = typer.Option(None, help="Only files of this space."),
    dataset: str | None = typer.Option(None, help="Only files of this folder."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List the files in the catalog."""
    with session_scope(resolve_config(config).database_url) as session:
        files = catalog.list_files(session, space=space, dataset=dataset)
    if as_json:
        print(json.dumps([f.model_dump(mode="json") for f in files]))
        return
    table = Table("id", "path", "space", "mime type", "size", "owner", "mtime")
    for f in files:
        table.add_row(
            str(f.id),
            f.path,
            f.space or "-",
            f.mime_type,
            format_size(f.size),
            f"{f.owner}:{f.group}",
            f.mtime.isoformat(timespec="seconds"),
        )
    out().print(table)


@file_app.command("show")
def show_cmd(
    file: str = typer.Argument(..., help="The file's id or absolute path."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one file and its metadata documents."""
    ref = file if file.isdigit() else str(Path(file).absolute())
    try:
        with session_scope(resolve_config(config).database_url) as session:
            found = catalog.find(session, ref)
            documents = catalog.metadata_of(session, found.id)
    except StoreflowError as exc:
        fail(str(exc))
    shown = {
        **found.model_dump(mode="json"),
        "metadata": [d.model_dump(mode="json") for d in documents],
    }
    if as_json:
        print(json.dumps(shown))
    else:
        out().print_json(json.dumps(shown))


@file_app.command("scan")
def scan_cmd(
    path: Path | None = typer.Argument(None, help="A folder to scan (default: the spaces)."),
    space: str = typer.Option("", help="Only this space."),
    checksum: bool = typer.Option(False, help="Compute SHA-256 of new and changed files."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Register what arrived without storeflow seeing it (a run of `file-scan`)."""
    from storeflow.cli.common import report
    from storeflow.cli.runner import run_here
    from storeflow.flows.files import file_scan

    folder = str(path.absolute()) if path else None
    report(
        run_here(file_scan, space=space, path=folder, checksum=checksum, config=config),
        as_json,
    )


@file_app.command("search")
def search_cmd(
    criteria_json: str | None = feed_options.CriteriaJson,
    query: str | None = feed_options.QueryOption,
    name_regex: str | None = feed_options.RegexOption,
    mime: str | None = feed_options.MimeOption,
    size_min: int | None = feed_options.SizeMinOption,
    size_max: int | None = feed_options.SizeMaxOption,
    space: str | None = feed_options.SpaceOption,
    dataset: str | None = feed_options.DatasetOption,
    path_prefix: str | None = feed_options.PrefixOption,
    owner: str | None = feed_options.OwnerOption,
    group: str | None = feed_options.GroupOption,
    metadata: list[str] | None = feed_options.MetadataOption,
    any_: bool = feed_options.AnyOption,
    save_as: str | None = typer.Option(None, "--save-as", help="Save the search as a feed."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Files of the catalog that meet the criteria (a feed's, with --save-as)."""
    from storeflow.models import feed_repository as feeds
    from storeflow.models.feed_criteria import matches, parse_criteria

    try:
        criteria = feed_options.criteria_from_options(
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
        parsed = parse_criteria(criteria)
        with session_scope(resolve_config(config).database_url) as session:
            found = [f.id for f in feeds.match_files(session) if matches(parsed, f)]
            files = [catalog.get(session, i) for i in found]
            feed = feeds.create(session, save_as, criteria) if save_as else None
    except StoreflowError as exc:
        fail(str(exc))
    if as_json:
        print(
            json.dumps(
                {
                    "files": [f.model_dump(mode="json") for f in files],
                    "feed": feed.model_dump(mode="json") if feed else None,
                }
            )
        )
        return
    table = Table("id", "path", "mime type", "size")
    for f in files:
        table.add_row(str(f.id), f.path, f.mime_type, format_size(f.size))
    out().print(table)
    if feed:
        out().print(f"saved as feed #{feed.id} {feed.name}")
