"""`storeflow exposer ...`: CIFS shares and NFS exports of spaces.

Mounted by cli/app.py (`app.add_typer(exposer_app, name="exposer")`); the shared
options and helpers are cli/common.py's.  The exposer models are imported by the verbs
that use them, so that every other verb's start-up does without them.
"""

from typing import Any

import typer

from storeflow.cli import common as cli
from storeflow.cli.common import ConfigOption, EtagOption, JsonOption, SubmitOption
from storeflow.cli.kinds import run_create, run_update

exposer_app = typer.Typer(
    help="Exposers: CIFS (Samba) shares and NFS exports of spaces.", no_args_is_help=True
)

KINDS = {"cifs": "cifs-exposer", "nfs": "nfs-exposer"}
ProtocolArg = typer.Argument(..., help="cifs or nfs.")


def _kind(protocol: str) -> str:
    if protocol not in KINDS:
        cli.fail(f"protocol: {protocol!r} is not cifs or nfs")
    return KINDS[protocol]


def _pairs(values: list[str], field: str) -> dict[str, str]:
    result = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            cli.fail(f"{field}: {item!r} is not KEY=VALUE")
        result[key.strip()] = value.strip()
    return result


def _rules(protocol: str, values: list[str]) -> list[dict[str, Any]]:
    """`who[:ro|rw]` -> access rules (cifs) or client rules (nfs)."""
    rules = []
    for item in values:
        who, _, level = item.rpartition(":") if item.endswith((":ro", ":rw")) else (item, "", "")
        if protocol == "cifs":
            rules.append({"to": who, "level": level or "rw"})
        else:
            rules.append({"client": who, "access": level or "ro"})
    return rules


def _launch(kind: str, action: str, params: dict[str, Any], submit: bool, as_json: bool) -> None:
    cli.launch(cli.flow_of(kind, action), params, submit, as_json)


@exposer_app.command("create")
def create_cmd(
    protocol: str = ProtocolArg,
    name: str = typer.Argument(..., help="Share (cifs) or exposer (nfs) name."),
    space: str = typer.Option(..., help="The space to expose."),
    read_only: bool = typer.Option(False, "--read-only", help="cifs: refuse writes."),
    comment: str | None = typer.Option(None, help="cifs: comment shown to clients."),
    hidden: bool = typer.Option(False, "--hidden", help="cifs: not browseable."),
    allow: list[str] = typer.Option([], help="cifs: USER or @GROUP[:ro|rw]; nfs: CLIENT[:ro|rw]."),
    deny: list[str] = typer.Option([], help="cifs: USER or @GROUP in 'invalid users'."),
    hosts_allow: list[str] = typer.Option([], help="cifs: 'hosts allow' entry."),
    option: list[str] = typer.Option([], help="cifs: share parameter KEY=VALUE (allow-list)."),
    pseudo: str | None = typer.Option(None, help="nfs (ganesha): NFSv4 pseudo path."),
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Expose a space over CIFS or NFS."""
    from storeflow.models.exposers import CifsExposerSpec, NfsExposerSpec

    kind = _kind(protocol)
    data: dict[str, Any] = {"name": name, "space": space}
    if protocol == "cifs":
        data |= {
            "read_only": read_only,
            "browseable": not hidden,
            "comment": comment,
            "access": _rules("cifs", allow),
            "denied": deny,
            "hosts_allow": hosts_allow,
            "options": _pairs(option, "option"),
        }
        spec = cli.spec(CifsExposerSpec, data, kind)
    else:
        data |= {"clients": _rules("nfs", allow), "pseudo": pseudo}
        spec = cli.spec(NfsExposerSpec, data, kind)
    run_create(kind, spec, config, submit_run, as_json)


@exposer_app.command("update")
def update_cmd(
    protocol: str = ProtocolArg,
    name: str = typer.Argument(...),
    rename: str | None = typer.Option(None, help="New name."),
    read_only: bool | None = typer.Option(None, "--read-only/--writable", help="cifs."),
    comment: str | None = typer.Option(None, help="cifs: comment."),
    option: list[str] = typer.Option([], help="cifs: KEY=VALUE; KEY= unsets it."),
    pseudo: str | None = typer.Option(None, help="nfs (ganesha): pseudo path."),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Change an exposer (access rules: use allow and deny)."""
    from storeflow.models.exposers import CifsExposerUpdate, NfsExposerUpdate

    kind = _kind(protocol)
    if protocol == "cifs":
        options = {k: (v or None) for k, v in _pairs(option, "option").items()}
        data = {"rename": rename, "read_only": read_only, "comment": comment}
        changes = cli.spec(CifsExposerUpdate, {**data, "options": options or None}, kind)
    else:
        changes = cli.spec(NfsExposerUpdate, {"rename": rename, "pseudo": pseudo}, kind)
    run_update(kind, name, etag, changes, config, submit_run, as_json)


@exposer_app.command("delete")
def delete_cmd(
    protocol: str = ProtocolArg,
    name: str = typer.Argument(...),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Remove an exposer (CIFS: open sessions are closed)."""
    kind = _kind(protocol)
    etag = cli.etag_or_current(etag, kind, name, config)
    params = {"name": name, "etag": etag, "config": config}
    _launch(kind, "delete", params, submit_run, as_json)


@exposer_app.command("allow")
def allow_cmd(
    protocol: str = ProtocolArg,
    name: str = typer.Argument(...),
    to: str = typer.Argument(..., help="cifs: USER or @GROUP; nfs: client."),
    level: str = typer.Option("rw", help="ro or rw."),
    squash: str = typer.Option("root_squash", help="nfs: root_squash, all_squash, ..."),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Allow a user/group (cifs) or a client (nfs): Manila's allow_access."""
    from storeflow.models.exposers import CifsAccessRule, NfsClientRule

    kind = _kind(protocol)
    if protocol == "cifs":
        rule = cli.spec(CifsAccessRule, {"to": to, "level": level}, f"{kind}.rule")
    else:
        data = {"client": to, "access": level, "squash": squash}
        rule = cli.spec(NfsClientRule, data, f"{kind}.rule")
    etag = cli.etag_or_current(etag, kind, name, config)
    params = {"name": name, "etag": etag, "rule": rule, "config": config}
    _launch(kind, "allow", params, submit_run, as_json)


@exposer_app.command("deny")
def deny_cmd(
    protocol: str = ProtocolArg,
    name: str = typer.Argument(...),
    to: str = typer.Argument(..., help="cifs: USER or @GROUP; nfs: client."),
    etag: int | None = EtagOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Deny a user/group (cifs) or remove a client (nfs): Manila's deny_access."""
    kind = _kind(protocol)
    etag = cli.etag_or_current(etag, kind, name, config)
    target = {"to": to} if protocol == "cifs" else {"client": to}
    params = {"name": name, "etag": etag, **target, "config": config}
    _launch(kind, "deny", params, submit_run, as_json)


@exposer_app.command("list")
def list_cmd(
    protocol: str | None = typer.Argument(None, help="cifs or nfs; omitted: both."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List exposers (managed and unmanaged)."""
    kinds = [_kind(protocol)] if protocol else list(KINDS.values())
    rows = [row for kind in kinds for row in cli.list_kind(kind, config)]
    cli.show_resources(rows, as_json, ["message"])


@exposer_app.command("show")
def show_cmd(
    protocol: str = ProtocolArg,
    name: str = typer.Argument(...),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one exposer."""
    cli.print_one(cli.lookup(_kind(protocol), name, config), as_json)
