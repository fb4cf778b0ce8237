"""The `storeflow` command line.

Each verb runs its flow in this process on the embedded default, or, with
--submit, creates a run of the deployment on the Prefect server that
PREFECT_API_URL names. Every verb a script might parse has --json.

One group per resource kind in the registry (tasks/kinds.py): the verbs written by
hand (cli/spaces.py, cli/replicas.py, cli/exposers.py) completed with those the
record implies (cli/kinds.py).  Reading (`--help`, `list`, `show`, `schema`,
`callback run`) imports neither Prefect nor a flow: a verb imports its flow when it
runs one, and the groups in LAZY are imported when their verb is used.
"""

import json
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

from storeflow.cli.common import (
    ConfigOption,
    JsonOption,
    SubmitOption,
    fail,
    guarded,
    launch,
    out,
    report,
)
from storeflow.cli.exposers import exposer_app
from storeflow.cli.kinds import group_name, mount_kinds
from storeflow.cli.replicas import profile_app, provider_app, replica_app
from storeflow.cli.spaces import snapshot_app, space_app, template_app
from storeflow.cli.warm.cli import warm_app
from storeflow.models.errors import StoreflowError
from storeflow.tasks import kinds

#: Groups imported only when their verb runs, with the help `storeflow --help` shows
#: for them meanwhile (tests/test_cli.py checks it against the group's own): what
#: they import (the sandbox, the transfer engine, Prefect) no listing should pay for.
LAZY: dict[str, tuple[str, str]] = {
    "callback": (
        "storeflow.cli.callbacks:callback_app",
        "Run Nodeum-style user callbacks in the sandbox.",
    ),
    "transfer": (
        "storeflow.cli.transfers:transfer_app",
        "Open Task Framework transfers (local, SMB, NFS) with callbacks.",
    ),
    "file": ("storeflow.cli.files:file_app", "The file catalog: files listeners work on."),
    "feed": (
        "storeflow.cli.feeds:feed_app",
        "Feeds: criteria that send matching files to subscribed listeners.",
    ),
    "listener": (
        "storeflow.cli.listeners:listener_app",
        "Listeners: extractors known by their RabbitMQ heartbeats.",
    ),
    "submission": (
        "storeflow.cli.listeners:submission_app",
        "Submissions: files sent to listeners, each a run of `submit`.",
    ),
    "listeners": (
        "storeflow.cli.listeners:listeners_app",
        "The listener services: heartbeats, statuses, the HTTP API.",
    ),
    "server": (
        "storeflow.cli.server:server_app",
        "The local stack: Prefect server, blocks, work pool, deployments, workers.",
    ),
}

#: The groups whose verbs are written by hand, by group name.
TAILORED: dict[str, typer.Typer] = {
    "space": space_app,
    "snapshot": snapshot_app,
    "template": template_app,
    "exposer": exposer_app,
    "provider": provider_app,
    "replica": replica_app,
    "profile": profile_app,
}


class StoreflowGroup(TyperGroup):
    """The top-level group: the LAZY groups join it when first asked for by name."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return names + [name for name in LAZY if name not in names]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in LAZY:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # a help listing needs the name and help only
            return TyperGroup(name=cmd_name, help=LAZY[cmd_name][1])
        return self.load(cmd_name)

    def load(self, name: str) -> Any:
        module, _, attribute = LAZY[name][0].partition(":")
        sub_app = getattr(__import__(module, fromlist=[attribute]), attribute)
        group = typer.main.get_group(sub_app)
        group.name = name
        self.commands[name] = group
        return group

    def load_all(self) -> None:
        for name in LAZY:
            if name not in self.commands:
                self.load(name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="storeflow",
    help="Storage operations and data movement as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=StoreflowGroup,
)


@app.callback()
def options(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show Prefect's log lines here too (else: storeflow.log)."
    ),
) -> None:
    """Storage operations and data movement as Prefect flows."""
    if verbose:
        os.environ["STOREFLOW_VERBOSE"] = "1"  # read by the runner; children inherit it


hooks_app = typer.Typer(help="Hook drivers.", no_args_is_help=True)
mount_kinds(app, TAILORED)
app.add_typer(hooks_app, name="hooks")
app.add_typer(warm_app, name="warm")


# -- whole-system verbs --------------------------------------------------------------


@app.command("reconcile")
def reconcile_cmd(
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Bring the database up to date with the filesystem."""
    from storeflow.cli.runner import run_here
    from storeflow.flows.reconcile import reconcile

    if submit_run:
        launch(reconcile, {"config": config}, True, as_json)
        return
    outcome = guarded(lambda: run_here(reconcile, config=config))
    changes = [change.row() for change in outcome.result or []]
    if as_json:
        print(json.dumps({**outcome.as_dict(), "result": changes}, default=str))
    else:
        from rich.table import Table

        table = Table("kind", "name", "change", "detail", title=f"reconcile: {outcome.state_name}")
        for change in changes:
            table.add_row(change["kind"], change["name"], change["change"], change["detail"])
        out().print(table)
    if not outcome.ok:
        raise typer.Exit(1)


@hooks_app.command("periodic")
def periodic_cmd(config: str | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Run every hook driver's periodic hook once."""
    from storeflow.cli.runner import run_here
    from storeflow.flows.periodic_hooks import periodic_hooks

    report(guarded(lambda: run_here(periodic_hooks, config=config)), as_json)


@app.command("schema")
def schema_cmd(
    kind: str = typer.Argument(
        ..., help=f"The kind: {', '.join(k.name for k in kinds.BUILTIN)}, or a plugin's."
    ),
) -> None:
    """Print the JSON Schema of a kind's spec."""
    try:
        model = kinds.get(kind).spec_model
    except StoreflowError as exc:
        fail(str(exc))
    print(json.dumps(model.model_json_schema(), indent=2))


@app.command("demo")
def demo_cmd(as_json: bool = JsonOption) -> None:
    """Run the storeflow demo: a template, a space, a snapshot, a conflict, deletes."""
    from storeflow.cli.demo import print_demo, run_demo

    rows = run_demo()
    print_demo(rows, as_json, out())
    if not all(r.expected for r in rows):
        raise typer.Exit(1)


@cache
def _command_for(groups: tuple[str, ...]) -> Callable[..., Any]:
    mount_kinds(app, TAILORED)  # kinds registered since this module was imported
    return typer.main.get_command(app)


def command() -> Callable[..., Any]:
    """The click command Typer builds from `app`: built once per process (and again
    only when a kind is registered later), since Typer rebuilds it (inspecting every
    verb's signature) on each `app()` call: ~20 ms, which a warm runner's children
    would otherwise pay for every command."""
    return _command_for(tuple(dict.fromkeys(group_name(k) for k in kinds.all_kinds())))


def preload() -> None:
    """Import now what any verb can import: the LAZY groups, every kind's flows, the
    runner.  For the warm runner, whose children (one per command) then import nothing."""
    built = command()
    assert isinstance(built, StoreflowGroup)
    built.load_all()
    for kind in kinds.all_kinds():
        for action in kind.actions:
            kind.flow(action)
    import storeflow.cli.runner
    import storeflow.flows.periodic_hooks
    import storeflow.flows.reconcile
    import storeflow.models.repository  # noqa: F401


INTERRUPTED = 130  # the shell's code for a command stopped by SIGINT


def main(args: list[str] | None = None) -> None:
    """Run the command line (`args`, else sys.argv); exits with the command's status.

    Whatever a verb did not expect (the Prefect API unreachable, a bug) ends the command
    with one line, exit 2; the traceback goes to $STOREFLOW_HOME/storeflow.log (and to
    the terminal with --verbose)."""
    try:
        command()(args=args, prog_name="storeflow")
    except (KeyboardInterrupt, SystemExit) as stop:
        # Ctrl-C (typer turns it into exit 130): say so in one line, as for any stop.
        if isinstance(stop, KeyboardInterrupt) or stop.code == INTERRUPTED:
            from storeflow.cli.common import err

            err().print("[red]interrupted[/red] (Ctrl-C): the command was stopped")
            raise SystemExit(INTERRUPTED) from None
        raise
    except Exception as exc:  # SystemExit (typer.Exit, usage errors) passes through
        if os.environ.get("STOREFLOW_VERBOSE"):
            raise
        from storeflow.cli.common import err, log_unexpected

        where = log_unexpected(exc)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        err().print(
            f"[red]error:[/red] {type(exc).__name__}: {reason} (traceback in {where})",
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
