"""The verbs every resource kind gets from its registry record (tasks/kinds.py).

`list` and `show` (under the parent, for kinds with one), `delete` when the kind has a
delete action, and `create --spec` / `update --changes` for kinds with no verb of that
name written by hand.  A group's hand-written verbs (space create --quota, exposer
allow, ...) stay as they are: a verb is only added where the group has none of its
name.  So a kind registered from a plugin gets a usable CLI with no edit here.

Nothing here imports Prefect or a flow: a verb imports its flow when it runs.
"""

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import typer
import typer.main

from storeflow.cli.common import (
    ConfigOption,
    EtagOption,
    JsonOption,
    SubmitOption,
    etag_or_current,
    fail,
    flow_of,
    launch,
    list_kind,
    lookup,
    print_one,
    show_resources,
    spec,
)
from storeflow.tasks import kinds
from storeflow.tasks.kinds import ResourceKind

Verb = Callable[..., None]


def group_name(kind: ResourceKind) -> str:
    """The CLI group of a kind's verbs: `storeflow GROUP VERB`."""
    return kind.command or kind.name


def verbs_of(app: typer.Typer) -> set[str]:
    """The verbs a Typer already has."""
    return {
        info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))
        for info in app.registered_commands
    }


def mount_kinds(app: typer.Typer, tailored: Mapping[str, typer.Typer]) -> None:
    """Mount one group per registered kind that `app` has not mounted yet: the
    hand-written group of that name if there is one, completed with the verbs its
    record implies, else a group of those verbs alone.  Safe to call again after
    more kinds are registered: groups already mounted are left alone."""
    mounted = {group.name for group in app.registered_groups}
    for kind in kinds.all_kinds():
        name = group_name(kind)
        if name in mounted:
            continue
        group = tailored.get(name) or typer.Typer(help=kind.help, no_args_is_help=True)
        add_kind_verbs(group, kind)
        app.add_typer(group, name=name)
        mounted.add(name)


def add_kind_verbs(group: typer.Typer, kind: ResourceKind) -> None:
    """The verbs `kind`'s record implies that `group` does not have yet."""
    builders: dict[str, Callable[[ResourceKind], Verb]] = {
        "create": create_verb,
        "update": update_verb,
        "delete": delete_verb,
        "list": list_verb,
        "show": show_verb,
    }
    wanted = [*(a for a in kind.actions if a in builders), "list", "show"]
    have = verbs_of(group)
    for verb in sorted(set(wanted) - have, key=wanted.index):
        group.command(verb, help=verb_help(kind, verb))(builders[verb](kind))


def plural(kind: ResourceKind) -> str:
    return f"{kind.name}s"


def verb_help(kind: ResourceKind, verb: str) -> str:
    defaults = {
        "list": f"List {plural(kind)}.",
        "show": f"Show one {kind.name}.",
        "delete": f"Delete a {kind.name}.",
        "create": f"Create a {kind.name} from its spec (`storeflow schema {kind.name}`).",
        "update": f"Change a {kind.name}.",
    }
    return kind.verb_help.get(verb, defaults[verb])


def parent_argument(kind: ResourceKind, required: bool) -> Any:
    parent = kind.parent or ""
    if required:
        return typer.Argument(..., metavar=parent.upper(), help=f"The {parent} it lives in.")
    return typer.Argument(
        None, metavar=parent.upper(), help=f"Only this {parent}'s {plural(kind)}."
    )


def list_verb(kind: ResourceKind) -> Verb:
    columns = list(kind.columns)
    if kind.parent:

        def list_in(
            parent: str | None = parent_argument(kind, required=False),
            config: str | None = ConfigOption,
            as_json: bool = JsonOption,
        ) -> None:
            show_resources(list_kind(kind.name, config, parent), as_json, columns)

        return list_in

    def list_(config: str | None = ConfigOption, as_json: bool = JsonOption) -> None:
        show_resources(list_kind(kind.name, config), as_json, columns)

    return list_


def show_verb(kind: ResourceKind) -> Verb:
    if kind.parent:

        def show_in(
            parent: str = parent_argument(kind, required=True),
            name: str = typer.Argument(...),
            config: str | None = ConfigOption,
            as_json: bool = JsonOption,
        ) -> None:
            print_one(lookup(kind.name, name, config, parent), as_json)

        return show_in

    def show(name: str, config: str | None = ConfigOption, as_json: bool = JsonOption) -> None:
        print_one(lookup(kind.name, name, config), as_json)

    return show


def delete_verb(kind: ResourceKind) -> Verb:
    """`delete [PARENT] NAME [--etag N]`, run by the kind's delete flow."""

    def run(parent: str | None, name: str, etag: int | None, config: str | None) -> Any:
        etag = etag_or_current(etag, kind.name, name, config, parent)
        where = {kind.parent: parent} if kind.parent else {}
        return {**where, "name": name, "etag": etag, "config": config}

    if kind.parent:

        def delete_in(
            parent: str = parent_argument(kind, required=True),
            name: str = typer.Argument(...),
            etag: int | None = EtagOption,
            config: str | None = ConfigOption,
            submit_run: bool = SubmitOption,
            as_json: bool = JsonOption,
        ) -> None:
            params = run(parent, name, etag, config)
            launch(kind.flow("delete"), params, submit_run, as_json)

        return delete_in

    def delete(
        name: str,
        etag: int | None = EtagOption,
        config: str | None = ConfigOption,
        submit_run: bool = SubmitOption,
        as_json: bool = JsonOption,
    ) -> None:
        launch(kind.flow("delete"), run(None, name, etag, config), submit_run, as_json)

    return delete


def run_create(kind: str, spec: Any, config: str | None, submit: bool, as_json: bool) -> None:
    """Run (or submit) the kind's create flow with a checked spec."""
    launch(flow_of(kind, "create"), {"spec": spec, "config": config}, submit, as_json)


def run_update(
    kind: str,
    name: str,
    etag: int | None,
    changes: Any,
    config: str | None,
    submit: bool,
    as_json: bool,
) -> None:
    """Run (or submit) the kind's update flow: `changes` to `name` as of `etag`."""
    etag = etag_or_current(etag, kind, name, config)
    params = {"name": name, "etag": etag, "changes": changes, "config": config}
    launch(flow_of(kind, "update"), params, submit, as_json)


def json_option(name: str, what: str) -> Any:
    return typer.Option(..., name, help=f"The {what} as a JSON object, or @FILE holding one.")


def json_object(text: str, field: str) -> dict[str, Any]:
    """`--spec '{...}'` or `--spec @file.json` -> the object; a one-line error otherwise."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"{field}: cannot read {text[1:]}: {exc.strerror or exc}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{field}: not JSON: {exc}")
    if not isinstance(data, dict):
        fail(f"{field}: expected a JSON object, got {type(data).__name__}")
    return data


def create_verb(kind: ResourceKind) -> Verb:
    def create(
        spec_text: str = json_option("--spec", "spec"),
        config: str | None = ConfigOption,
        submit_run: bool = SubmitOption,
        as_json: bool = JsonOption,
    ) -> None:
        s = spec(kind.spec_model, json_object(spec_text, kind.name), kind.name)
        run_create(kind.name, s, config, submit_run, as_json)

    return create


def update_verb(kind: ResourceKind) -> Verb:
    def update(
        name: str,
        changes_text: str = json_option("--changes", "changes"),
        etag: int | None = EtagOption,
        config: str | None = ConfigOption,
        submit_run: bool = SubmitOption,
        as_json: bool = JsonOption,
    ) -> None:
        data = json_object(changes_text, f"{kind.name}.changes")
        # Without a changes model in the record, the flow's own parameter check judges.
        model = kind.changes_model
        changes = spec(model, data, kind.name) if model else data
        run_update(kind.name, name, etag, changes, config, submit_run, as_json)

    return update
