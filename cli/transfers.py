"""`storeflow transfer run DEFINITION.json|.json.j2|.yaml` or `storeflow transfer run -t
TASK_ID -c CONFIG_DIR` (OTF's `task-run`): one OTF task, dispatched by its type: a
transfer (with a progress bar), an execution (the `execution` flow) or a batch (the
`batch` flow, its tasks found in the config directory, or beside FILE).

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
from storeflow.models.otf import (
    AddonExecutionDefinition,
    BatchDefinition,
    ExecutionDefinition,
    parse_task,
)
from storeflow.models.transfer import DefinitionError, read_definition_file
from storeflow.tasks.otf.addons import check as check_addons
from storeflow.tasks.otf.addons import uses_addons
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


def read_definition(
    definition: Path | None, task_id: str | None, config_dir: Path | None
) -> tuple[Any, str]:
    """The definition as written (rendered when it is a template) and its task id."""
    from storeflow.tasks.otf.config import load_task, render_task_file

    if definition is not None:
        if task_id is not None or config_dir is not None:
            raise DefinitionError(str(definition), [("(command)", "give FILE or -t/-c, not both")])
        if definition.name.endswith((".json", ".json.j2")):
            stem = definition.name.removesuffix(".j2").removesuffix(".json")
            return render_task_file(definition), stem
        return read_definition_file(definition), definition.stem
    if task_id is None or config_dir is None:
        raise DefinitionError(
            "(command)", [("(command)", "give FILE, or -t TASK_ID -c CONFIG_DIR")]
        )
    return load_task(config_dir, task_id), task_id


@transfer_app.command("run")
def run_command(
    definition: Path | None = typer.Argument(
        None, help="OTF transfer definition (.json, .json.j2, .yaml, .yml)."
    ),
    task_id: str | None = typer.Option(
        None, "-t", "--task-id", help="OTF task id: TASK_ID.json(.j2) under -c."
    ),
    config_dir: Path | None = typer.Option(
        None, "-c", "--config-dir", help="OTF config directory (task files, variables)."
    ),
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
        data, stem = read_definition(definition, task_id, config_dir)
        if uses_addons(data):  # an OTF addon's protocol: its own schemas validate it
            check_addons(data, str(definition or task_id))
            model = None
        else:
            model = parse_task(data, str(definition or task_id))
    except StoreflowError as exc:
        fail(str(exc), EXIT_USAGE)
    if callbacks is not None and not callbacks.is_dir():
        fail(f"--callbacks {callbacks}: not a directory", EXIT_USAGE)
    parameters: dict[str, Any] = {
        "name": name or as_task_id(stem),
        "callbacks_dir": str(callbacks.absolute()) if callbacks else None,
        "sandbox_policy": sandbox_policy,
        "config": config,
    }
    if isinstance(model, BatchDefinition | ExecutionDefinition | AddonExecutionDefinition):
        where = config_dir or (definition.absolute().parent if definition else None)
        run_other(model, data, parameters, str(where), submit_run, as_json)
        return
    check_parameters(transfer, parameters)  # before any run exists
    try:
        if model is None:
            given = {"otf_definition": data, **parameters}
            outcome = submit(transfer, given) if submit_run else run_here(transfer, **given)
        elif submit_run:
            outcome = submit(transfer, {"definition": data, **parameters})
        else:
            outcome = run_with_bar({"definition": model, **parameters}, show_bar=not as_json)
    except StoreflowError as exc:
        fail(str(exc), EXIT_USAGE)
    report(outcome, as_json)


def run_other(
    model: BatchDefinition | ExecutionDefinition | AddonExecutionDefinition,
    data: Any,
    parameters: dict[str, Any],
    config_dir: str,
    submit_run: bool,
    as_json: bool,
) -> None:
    """An execution or a batch: its own flow, here or as a run of its deployment."""
    from storeflow.flows.batches import batch
    from storeflow.flows.executions import execution

    chosen: Any
    if isinstance(model, BatchDefinition):
        # A batch's tasks are found by id in the config directory (beside FILE).
        chosen, inline = batch, {"config_dir": config_dir}
        local = {"definition": model, **inline}
        sent = {"definition": data, **inline}
    else:
        chosen = execution
        local, sent = {"definition": model}, {"definition": data}
    check_parameters(chosen, parameters)
    try:
        if submit_run:
            outcome = submit(chosen, {**sent, **parameters})
        else:
            outcome = run_here(chosen, **local, **parameters)
    except StoreflowError as exc:
        fail(str(exc), EXIT_USAGE)
    report(outcome, as_json)
