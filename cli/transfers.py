"""`storeflow transfer run DEFINITION.json|.yaml`: one OTF transfer, with a progress bar.

Exit codes: 0 delivered (or submitted); 1 the run failed (Refused, Vetoed, Errored:
the one-line message names the cause); 2 the command was wrong before anything ran
(unreadable or invalid definition, missing callbacks directory, no server for --submit).
"""

import json
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from storeflow.cli.common import check_parameters, err, out
from storeflow.cli.runner import RunOutcome, run_here, submit
from storeflow.flows.transfers import transfer
from storeflow.models.errors import StoreflowError
from storeflow.models.names import as_task_id
from storeflow.models.transfer import parse_definition, read_definition_file
from storeflow.tasks.transfer import CopyCounters
from storeflow.tasks.transfer.progress import listening

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

transfer_app = typer.Typer(
    help="Open Task Framework transfers (local, SMB, NFS) with callbacks.",
    no_args_is_help=True,
)


@transfer_app.callback()
def _group() -> None:
    """Open Task Framework transfers (local, SMB, NFS) with callbacks."""


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def fail(message: str, code: int) -> NoReturn:
    err().print(f"[red]error:[/red] {one_line(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_with_bar(parameters: dict[str, Any], show_bar: bool) -> RunOutcome:
    # A bar only makes sense on a terminal; in a pipe it would add stray lines.
    if not (show_bar and err().is_terminal):
        return run_here(transfer, **parameters)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err(),
        transient=True,
    )
    task = bar.add_task("starting", total=None)

    def show(counters: CopyCounters) -> None:
        bar.update(
            task,
            completed=counters.bytes_done,
            total=counters.bytes_total or None,
            description=f"{counters.files_done}/{counters.files_total} files",
        )

    with bar, listening(show):
        return run_here(transfer, **parameters)


def report(outcome: RunOutcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.as_dict(), default=str))
    elif outcome.ok:
        out().print(
            f"{outcome.flow_run_name or 'transfer'}: [green]{outcome.state_name}[/green]"
            f" {one_line(outcome.message).removeprefix(f'{outcome.flow_run_name}: ')}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        # The state message already starts with the run name: "transfer/x: cause".
        err().print(
            f"[red]{outcome.state_name}:[/red] {one_line(outcome.message)}",
            highlight=False,
            soft_wrap=True,
        )
    if not outcome.ok:
        raise typer.Exit(EXIT_FAILED)


@transfer_app.command("run")
def run_command(
    definition: Path = typer.Argument(..., help="OTF transfer definition (.json, .yaml, .yml)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    submit_run: bool = typer.Option(
        False, "--submit", help="Create a run of the 'transfer' deployment instead."
    ),
    callbacks: Path | None = typer.Option(
        None, "--callbacks", help="Hook directory: <stage>/<name>.py|.js callbacks."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Transfer task id (default: the definition file's stem)."
    ),
    sandbox_policy: str | None = typer.Option(
        None, "--sandbox-policy", help="A saved SandboxPolicy block."
    ),
    config: str | None = typer.Option(
        None, "--config", help="Name of a saved StoreflowConfig block (default: environment)."
    ),
) -> None:
    """Run one transfer definition; exit 0 when delivered."""
    try:
        # Read once: --submit sends the data as written (the model would mask inline
        # passwords), a local run the validated model.
        data = read_definition_file(definition)
        model = parse_definition(data, str(definition))
    except StoreflowError as exc:
        fail(str(exc), EXIT_USAGE)
    if callbacks is not None and not callbacks.is_dir():
        fail(f"--callbacks {callbacks}: not a directory", EXIT_USAGE)
    parameters: dict[str, Any] = {
        "name": name or as_task_id(definition.stem),
        "callbacks_dir": str(callbacks.absolute()) if callbacks else None,
        "sandbox_policy": sandbox_policy,
        "config": config,
    }
    check_parameters(transfer, parameters)  # before any run exists
    try:
        if submit_run:
            outcome = submit(transfer, {"definition": data, **parameters})
        else:
            outcome = run_with_bar({"definition": model, **parameters}, show_bar=not as_json)
    except StoreflowError as exc:
        fail(str(exc), EXIT_USAGE)
    report(outcome, as_json)
