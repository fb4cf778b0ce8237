"""The `storeflow` command line.

Each verb runs its flow in this process on the embedded default, or, with
--submit, creates a run of the deployment on the Prefect server that
PREFECT_API_URL names. Every verb a script might parse has --json.
"""

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import typer
import typer.main
from pydantic import BaseModel
from rich.table import Table

from storeflow.cli.callbacks import callback_app
from storeflow.cli.common import (
    ConfigOption,
    EtagOption,
    JsonOption,
    SubmitOption,
    add_delete_verb,
    add_list_verb,
    add_show_verb,
    etag_or_current,
    fail,
    guarded,
    launch,
    list_kind,
    lookup,
    out,
    report,
    show_one,
    show_resources,
    spec,
)
from storeflow.cli.exposers import exposer_app
from storeflow.cli.files import file_app
from storeflow.cli.replicas import profile_app, provider_app, replica_app
from storeflow.cli.runner import run_here
from storeflow.cli.transfers import transfer_app
from storeflow.cli.warm.cli import warm_app
from storeflow.flows import reconcile as reconcile_flows
from storeflow.flows.periodic_hooks import periodic_hooks
from storeflow.flows.snapshots import snapshot_create, snapshot_delete
from storeflow.flows.spaces import space_create, space_delete, space_update
from storeflow.flows.templates import template_create, template_delete, template_update
from storeflow.models.replicas import ProfileSpec, ProviderSpec, ReplicaSpec
from storeflow.models.schemas import (
    SnapshotSpec,
    SpaceSpec,
    SpaceUpdate,
    TemplateSpec,
    TemplateUpdate,
)

app = typer.Typer(
    name="storeflow",
    help="Storage operations and data movement as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
space_app = typer.Typer(help="Spaces: directory trees with a quota.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Read-only snapshots of spaces.", no_args_is_help=True)
template_app = typer.Typer(help="Templates installed into new spaces.", no_args_is_help=True)
hooks_app = typer.Typer(help="Hook drivers.", no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(template_app, name="template")
app.add_typer(hooks_app, name="hooks")
app.add_typer(callback_app, name="callback")
app.add_typer(transfer_app, name="transfer")
app.add_typer(exposer_app, name="exposer")
app.add_typer(provider_app, name="provider")
app.add_typer(replica_app, name="replica")
app.add_typer(profile_app, name="profile")
app.add_typer(warm_app, name="warm")
app.add_typer(file_app, name="file")

# -- spaces -------------------------------------------------------------------------


@space_app.command("create")
def space_create_cmd(
    name: str,
    quota: str = typer.Option("0", help="Quota, e.g. 10G; 0 means no limit."),
    template: str | None = typer.Option(None, help="Template to install."),
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a space."""
    s = spec(SpaceSpec, {"name": name, "quota": quota, "template": template}, "space")
    launch(space_create, {"spec": s, "config": config}, submit_run, as_json)


@space_app.command("update")
def space_update_cmd(
    name: str,
    rename: str | None = typer.Option(None, help="New name."),
    quota: str | None = typer.Option(None, help="New quota; 0 removes the limit."),
    uninstall_template: bool = typer.Option(False, help="Remove the unchanged template."),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Rename, resize or uninstall the template of a space."""
    changes = spec(
        SpaceUpdate,
        {"rename": rename, "quota": quota, "uninstall_template": uninstall_template},
        "space",
    )
    etag = etag_or_current(etag, "space", name, config)
    params = {"name": name, "etag": etag, "changes": changes, "config": config}
    launch(space_update, params, submit_run, as_json)


@space_app.command("delete")
def space_delete_cmd(
    name: str,
    force: bool = typer.Option(False, help="Delete even if the space holds data."),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a space."""
    etag = etag_or_current(etag, "space", name, config)
    params = {"name": name, "etag": etag, "force": force, "config": config}
    launch(space_delete, params, submit_run, as_json)


# -- snapshots ----------------------------------------------------------------------


add_list_verb(space_app, "space", ["quota", "used", "template", "message"], "List spaces.")
add_show_verb(space_app, "space", "Show one space.")


@snapshot_app.command("create")
def snapshot_create_cmd(
    space: str,
    name: str,
    mode: str = typer.Option("auto", help="auto, reflink, hardlink or copy."),
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Snapshot a space."""
    s = spec(SnapshotSpec, {"space": space, "name": name, "mode": mode}, "snapshot")
    launch(snapshot_create, {"spec": s, "config": config}, submit_run, as_json)


@snapshot_app.command("delete")
def snapshot_delete_cmd(
    space: str,
    name: str,
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete a snapshot."""
    etag = etag_or_current(etag, "snapshot", name, config, space)
    params = {"space": space, "name": name, "etag": etag, "config": config}
    launch(snapshot_delete, params, submit_run, as_json)


@snapshot_app.command("list")
def snapshot_list_cmd(
    space: str | None = typer.Argument(None, help="Only this space's snapshots."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List snapshots."""
    show_resources(list_kind("snapshot", config, space), as_json, ["mode", "files", "message"])


@snapshot_app.command("show")
def snapshot_show_cmd(
    space: str, name: str, config: str | None = ConfigOption, as_json: bool = JsonOption
) -> None:
    """Show one snapshot."""
    show_one(lookup("snapshot", name, config, space), as_json)


# -- templates ----------------------------------------------------------------------


@template_app.command("create")
def template_create_cmd(
    name: str,
    source: Path = typer.Option(..., help="Directory to copy into the template store."),
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a template from a directory."""
    s = spec(TemplateSpec, {"name": name, "source": source.absolute()}, "template")
    launch(template_create, {"spec": s, "config": config}, submit_run, as_json)


@template_app.command("update")
def template_update_cmd(
    name: str,
    rename: str | None = typer.Option(None, help="New name within the store."),
    source: Path | None = typer.Option(None, help="Replace from this directory."),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Rename a template or replace its tree."""
    changes = spec(
        TemplateUpdate,
        {"rename": rename, "source": source.absolute() if source else None},
        "template",
    )
    etag = etag_or_current(etag, "template", name, config)
    params = {"name": name, "etag": etag, "changes": changes, "config": config}
    launch(template_update, params, submit_run, as_json)


add_delete_verb(template_app, "template", template_delete, "Delete a template from the store.")
add_list_verb(template_app, "template", ["used", "files", "message"], "List templates.")
add_show_verb(template_app, "template", "Show one template.")


# -- whole-system verbs --------------------------------------------------------------


@app.command("reconcile")
def reconcile_cmd(
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Bring the database up to date with the filesystem."""
    if submit_run:
        launch(reconcile_flows.reconcile, {"config": config}, True, as_json)
        return
    outcome = guarded(lambda: run_here(reconcile_flows.reconcile, config=config))
    changes = [change.row() for change in outcome.result or []]
    if as_json:
        print(json.dumps({**outcome.as_dict(), "result": changes}, default=str))
    else:
        table = Table("kind", "name", "change", "detail", title=f"reconcile: {outcome.state_name}")
        for change in changes:
            table.add_row(change["kind"], change["name"], change["change"], change["detail"])
        out().print(table)
    if not outcome.ok:
        raise typer.Exit(1)


@hooks_app.command("periodic")
def periodic_cmd(config: str | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Run every hook driver's periodic hook once."""
    report(guarded(lambda: run_here(periodic_hooks, config=config)), as_json)


@app.command("schema")
def schema_cmd(
    kind: str = typer.Argument(..., help="space, snapshot, template, provider, replica, profile"),
) -> None:
    """Print the JSON Schema of a kind's spec."""
    models: dict[str, type[BaseModel]] = {
        "space": SpaceSpec,
        "snapshot": SnapshotSpec,
        "template": TemplateSpec,
        "provider": ProviderSpec,
        "replica": ReplicaSpec,
        "profile": ProfileSpec,
    }
    if kind not in models:
        fail(f"kind: {kind!r} is not one of {', '.join(models)}")
    print(json.dumps(models[kind].model_json_schema(), indent=2))


@app.command("demo")
def demo_cmd(as_json: bool = JsonOption) -> None:
    """Run the storeflow demo: a template, a space, a snapshot, a conflict, deletes."""
    from storeflow.cli.demo import print_demo, run_demo

    rows = run_demo()
    print_demo(rows, as_json, out())
    if not all(r.expected for r in rows):
        raise typer.Exit(1)


@cache
def command() -> Callable[..., Any]:
    """The click command Typer builds from `app`: built once per process, since Typer
    rebuilds it (inspecting every verb's signature) on each `app()` call: ~20 ms, which
    a warm runner's children would otherwise pay for every command."""
    return typer.main.get_command(app)


def main(args: list[str] | None = None) -> None:
    """Run the command line (`args`, else sys.argv); exits with the command's status."""
    command()(args=args, prog_name="storeflow")


if __name__ == "__main__":
    main()
