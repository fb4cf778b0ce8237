"""What every `storeflow` verb shares: options, one-line errors, running or submitting a
flow, reading resources and printing them.

cli/app.py and the sub-apps it mounts (cli/replicas.py, ...) import from here, so
a sub-app can use these helpers at import time without importing cli/app.py.

Importing this module imports neither Prefect nor the database layer: a verb that
reads (`list`, `show`) imports SQLAlchemy when it runs, and only a verb that runs a
flow imports Prefect (cli/runner.py) and the flow.
"""

import json
import os
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from pydantic import BaseModel

from storeflow.models.config import Config
from storeflow.models.errors import StoreflowError
from storeflow.models.schemas import ResourceView, parse_spec
from storeflow.models.settings import CONFIG_BLOCK_ENV
from storeflow.tasks import kinds
from storeflow.tasks.kinds import cells

if TYPE_CHECKING:
    from prefect import Flow
    from rich.console import Console
    from sqlalchemy.orm import Session

    from storeflow.cli.runner import RunOutcome

T = TypeVar("T")

_consoles: dict[tuple[int, bool], "Console"] = {}


def _console(stderr: bool) -> "Console":
    # Made on first use in each process: a warm runner's child must see its client's
    # terminal (colour, width), not the log file the runner started with.
    key = (os.getpid(), stderr)
    if key not in _consoles:
        from rich.console import Console  # only when something is printed through it

        _consoles[key] = Console(stderr=stderr)
    return _consoles[key]


def out() -> "Console":
    """The console for results (stdout)."""
    return _console(stderr=False)


def err() -> "Console":
    """The console for errors and progress (stderr)."""
    return _console(stderr=True)


JsonOption = typer.Option(False, "--json", help="Print one JSON object.")
SubmitOption = typer.Option(
    False, "--submit", help="Create a run of the deployment instead of running here."
)
ConfigOption = typer.Option(
    None, "--config", help="Name of a saved StoreflowConfig block (default: environment)."
)
EtagOption = typer.Option(
    None, "--etag", help="The etag you last read; omitted: whatever it is now."
)


def fail(message: str, code: int = 2) -> NoReturn:
    err().print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def log_unexpected(error: BaseException) -> str:
    """Append `error`'s traceback to $STOREFLOW_HOME/storeflow.log; returns its path."""
    import traceback
    from datetime import UTC, datetime

    from storeflow.models.settings import storeflow_home

    log = storeflow_home() / "storeflow.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write(f"{datetime.now(UTC).isoformat()} unexpected error\n")
            out.write("".join(traceback.format_exception(error)))
    except OSError:
        return "nowhere: the log could not be written"
    return str(log)


def guarded(fn: "Callable[[], T]") -> T:
    """`fn()`, with a refusal storeflow raised on purpose as one line, exit 2."""
    try:
        return fn()
    except StoreflowError as exc:
        fail(str(exc))


def report(outcome: "RunOutcome", as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.as_dict(), default=str))
    elif outcome.ok:
        etag = outcome.result.get("etag") if isinstance(outcome.result, dict) else None
        suffix = f" (etag {etag})" if etag is not None else ""
        url = outcome.result.get("url") if isinstance(outcome.result, dict) else None
        if url:  # --submit: the run's name, id and page in the UI
            suffix = f" id {outcome.flow_run_id} {url}"
        out().print(f"{outcome.flow_run_name or ''}: [green]{outcome.state_name}[/green]{suffix}")
    else:
        err().print(
            f"{outcome.flow_run_name or ''}: [red]{outcome.state_name}[/red]: {outcome.message}",
            soft_wrap=True,  # one line, however long the reason
        )
    if not outcome.ok:
        raise typer.Exit(1)


def read_config(name: str | None) -> Config:
    """The configuration a read-only verb needs: the saved StoreflowConfig block that
    --config (or $STOREFLOW_CONFIG_BLOCK) names, which imports Prefect to load it; else
    the environment's, which does not."""
    if name or os.environ.get(CONFIG_BLOCK_ENV):
        from storeflow.blocks.config import resolve_config

        return resolve_config(name)
    return Config()


def flow_of(kind: str, action: str) -> "Flow[..., Any]":
    """The flow of a kind's action, imported now (with Prefect), not when the CLI starts."""
    flow: Flow[..., Any] = kinds.get(kind).flow(action)
    return flow


def launch(
    flow: "Flow[..., Any]", parameters: dict[str, Any], do_submit: bool, as_json: bool
) -> None:
    from storeflow.cli.runner import run_here, submit

    check_parameters(flow, parameters)
    if do_submit:
        wire = json.loads(json.dumps(parameters, default=_jsonable))
        report(guarded(lambda: submit(flow, wire)), as_json)
    else:
        report(guarded(lambda: run_here(flow, **parameters)), as_json)


def check_parameters(flow: "Flow[..., Any]", parameters: dict[str, Any]) -> None:
    """Validate a run's parameters as the flow will, before any run is created: a bad
    value is refused in one line naming it, and never reaches Prefect's database."""
    from pydantic import TypeAdapter, ValidationError

    from storeflow.models.bounds import BoundError

    hints = typing.get_type_hints(flow.fn, include_extras=True)
    for name, value in parameters.items():
        if name not in hints:
            continue
        try:
            TypeAdapter(hints[name]).validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = [name, *(str(part) for part in first["loc"])]
            reason = first["msg"].removeprefix("Value error, ")
            bound = first.get("ctx", {}).get("error")
            if isinstance(bound, BoundError):
                where, reason = [*where, bound.field], bound.reason
            fail(f"{'.'.join(part for part in where if part)}: {reason}")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def etag_or_current(
    etag: int | None, kind: str, name: str, config: str | None, scope_space: str | None = None
) -> int | None:
    """The etag the user gave (--etag), checked; None: the run takes the current one when
    it gets the resource (last writer wins).  The resource must exist either way: a
    missing one is refused here, before any flow run is created."""
    from storeflow.models.bounds import MAX_ETAG

    if etag is not None and not 1 <= etag <= MAX_ETAG:
        fail(f"etag: {etag} is not an etag (1 to {MAX_ETAG})")
    lookup(kind, name, config, scope_space)
    return etag


def read_one(config: str | None, find: "Callable[[Session], T]") -> T:
    """What `find` reads from the resource database; a refusal (not found...) is one
    line, exit 2."""
    from storeflow.models.db import session_scope

    try:
        with session_scope(read_config(config).database_url) as session:
            return find(session)
    except StoreflowError as exc:
        fail(str(exc))


def print_one(found: BaseModel, as_json: bool) -> None:
    """One record: compact JSON for scripts, indented and coloured for people."""
    if as_json:
        print(found.model_dump_json())
    else:
        out().print_json(found.model_dump_json())


def lookup(
    kind: str, name: str, config: str | None, scope_space: str | None = None
) -> ResourceView:
    """One resource; `scope_space` names the parent it lives in (a snapshot's space)."""
    from storeflow.models import quickread

    parent = None if scope_space is None else (_parent_kind(kind), scope_space)
    url = read_config(config).database_url
    try:
        quick = quickread.find(url, kind, name, parent)
    except StoreflowError as exc:
        fail(str(exc))
    if quick is not None:
        return quick

    from storeflow.models import repository

    def find(session: "Session") -> ResourceView:
        scope = ""
        if scope_space is not None:
            scope = str(repository.find(session, _parent_kind(kind), scope_space).id)
        return repository.find(session, kind, name, scope)

    return read_one(config, find)


def spec(model: type[Any], data: dict[str, Any], what: str) -> Any:
    try:
        return parse_spec(model, {k: v for k, v in data.items() if v is not None}, what)
    except StoreflowError as exc:
        fail(str(exc))


def show_resources(rows: list[ResourceView], as_json: bool, columns: list[str]) -> None:
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    from rich.table import Table

    table = Table("name", "status", "etag", *columns)
    for row in rows:
        table.add_row(row.name, row.status.value, str(row.etag), *cells(row, columns))
    out().print(table)


def list_kind(kind: str, config: str | None, parent: str | None = None) -> list[ResourceView]:
    """A kind's resources; `parent` keeps those inside it (a space's snapshots, replicas)."""
    from storeflow.models import quickread

    url = read_config(config).database_url
    try:
        quick = quickread.list_kind(
            url, kind, None if parent is None else (_parent_kind(kind), parent)
        )
    except StoreflowError as exc:
        fail(str(exc))
    if quick is not None:
        return quick

    from storeflow.models import repository
    from storeflow.models.db import session_scope

    try:
        with session_scope(url) as session:
            found = repository.find(session, _parent_kind(kind), parent) if parent else None
            return repository.list_kind(session, kind, parent_id=found.id if found else None)
    except StoreflowError as exc:
        fail(str(exc))


def _parent_kind(kind: str) -> str:
    # Replicas and profiles are filed under their space without the registry naming a
    # parent (they are not scoped by it: their names are unique system-wide).
    try:
        return kinds.get(kind).parent or "space"
    except StoreflowError:
        return "space"
