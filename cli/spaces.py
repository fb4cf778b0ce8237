"""`storeflow space|snapshot|template ...`: the verbs written by hand for these kinds.

cli/kinds.py completes each group with the verbs the registry implies (list, show,
template delete); cli/app.py mounts them.  Flows are imported when a verb runs.
"""

from pathlib import Path

import typer

from storeflow.cli.common import (
    ConfigOption,
    EtagOption,
    JsonOption,
    SubmitOption,
    etag_or_current,
    flow_of,
    launch,
    spec,
)
from storeflow.cli.kinds import run_create, run_update
from storeflow.models.schemas import (
    SnapshotSpec,
    SpaceSpec,
    SpaceUpdate,
    TemplateSpec,
    TemplateUpdate,
)

space_app = typer.Typer(help="Spaces: directory trees with a quota.", no_args_is_help=True)
snapshot_app = typer.Typer(help="Read-only snapshots of spaces.", no_args_is_help=True)
template_app = typer.Typer(help="Templates installed into new spaces.", no_args_is_help=True)

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
    run_create("space", s, config, submit_run, as_json)


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
    run_update("space", name, etag, changes, config, submit_run, as_json)


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
    launch(flow_of("space", "delete"), params, submit_run, as_json)


# -- snapshots ----------------------------------------------------------------------


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
    run_create("snapshot", s, config, submit_run, as_json)


# snapshot delete is the verb cli/kinds.py builds for a kind with a parent:
# `snapshot delete SPACE NAME [--etag N]`.

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
    run_create("template", s, config, submit_run, as_json)


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
    run_update("template", name, etag, changes, config, submit_run, as_json)
