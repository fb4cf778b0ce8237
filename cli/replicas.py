"""`storeflow provider|replica|profile ...`: providers, replicas and tiering profiles.

Mounted by cli/app.py (`app.add_typer(provider_app, name="provider")`, ...). Every
option maps onto a field of the specs in models/replicas.py and is validated there
(`spec()`), so bad input is one line naming the field, exit 2, and nothing runs.
`replica sync` and `profile tier` run one pass now, through the same flows the schedules
run (`replica-sync`, `profile-tier`); with --submit, as a run of their deployment.
list, show and delete, where not written here, are cli/kinds.py's, from the registry;
flows are imported when a verb runs.
"""

import re
from pathlib import Path
from typing import Any

import typer

from storeflow.cli.common import (
    ConfigOption,
    JsonOption,
    SubmitOption,
    fail,
    flow_of,
    guarded,
    launch,
    list_kind,
    lookup,
    out,
    report,
    show_resources,
    spec,
)
from storeflow.cli.kinds import run_create
from storeflow.models.replicas import ProfileSpec, ProviderSpec, ReplicaSpec
from storeflow.tasks import kinds

provider_app = typer.Typer(
    help="Providers: remote endpoints (local directory, SMB share, NFS export) for replicas.",
    no_args_is_help=True,
)
replica_app = typer.Typer(
    help="Replicas: a space kept in sync with a provider's directory.", no_args_is_help=True
)
profile_app = typer.Typer(
    help="Tiering profiles: pools, fastest first, and the rules that move files down.",
    no_args_is_help=True,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*", re.IGNORECASE)
# A rule is KEY=VALUE pairs separated by commas; a comma starts a new pair only when a
# `key=` follows, so a name_pattern may hold commas (`.{1,3}\.log`).
_RULE_SPLIT = re.compile(r",(?=\s*[A-Za-z_]\w*\s*=)")

IntervalOption = typer.Option(
    None, "--interval", help="Seconds between scheduled runs (>= 60), or 15m, 6h, 1d."
)
CronOption = typer.Option(None, "--cron", help="Cron expression, UTC, instead of --interval.")


def seconds(value: str | None) -> str | int | None:
    """`30d`, `6h`, `15m`, `90s` -> seconds; anything else as given, for the spec to judge."""
    if value is None:
        return None
    match = _DURATION.fullmatch(value)
    return int(match.group(1)) * _UNITS[match.group(2).lower()] if match else value


def schedule(interval: str | None, cron: str | None) -> dict[str, Any] | None:
    """The spec's `schedule`, or None for its default (hourly)."""
    given = {"interval": seconds(interval), "cron": cron}
    return {k: v for k, v in given.items() if v is not None} or None


def run_now(
    kind: str, action: str, name: str, config: str | None, submit: bool, as_json: bool
) -> None:
    """One run of a kind's scheduled flow (`replica sync`); says what it moved."""
    from storeflow.cli.runner import run_here

    lookup(kind, name, config)  # a missing resource is bad input (exit 2), not a run
    flow = flow_of(kind, action)
    params = {"name": name, "config": config}
    if submit or as_json:
        launch(flow, params, submit, as_json)
        return
    outcome = guarded(lambda: run_here(flow, **params))
    if not outcome.ok:
        report(outcome, False)  # the reason on stderr, exit 1
    head, _, detail = (outcome.message or "").partition(": ")
    run_name = outcome.flow_run_name or head
    out().print(
        f"{run_name}: [green]{outcome.state_name}[/green]: {detail}",
        highlight=False,
        soft_wrap=True,
    )


# -- providers ---------------------------------------------------------------------------


@provider_app.command("create")
def provider_create_cmd(
    name: str,
    directory: str | None = typer.Option(
        None,
        help="Required. local: a directory (made absolute); smb/nfs: a directory inside the "
        "share or export ('/' for its top).",
    ),
    protocol: str = typer.Option("local", help="local, smb or nfs."),
    block: str | None = typer.Option(
        None, help="smb/nfs: saved SMBRemote/NFSRemote block with address and credentials."
    ),
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Record a provider after checking that it answers and its directory exists."""
    if protocol == "local" and directory:
        directory = str(Path(directory).absolute())
    data = {"name": name, "protocol": protocol, "directory": directory, "block": block}
    s = spec(ProviderSpec, data, "provider")
    run_create("provider", s, config, submit_run, as_json)


# -- replicas ----------------------------------------------------------------------------


@replica_app.command("create")
def replica_create_cmd(
    name: str,
    space: str | None = typer.Option(None, help="Required. The space kept in sync."),
    provider: str | None = typer.Option(None, help="Required. The provider it syncs with."),
    direction: str | None = typer.Option(
        None,
        help="Required. upstream (space -> provider), downstream (provider -> space) or "
        "bidirectional (the newer copy wins).",
    ),
    remote_directory: str | None = typer.Option(
        None, help="Directory under the provider's root; default: the space name."
    ),
    interval: str | None = IntervalOption,
    cron: str | None = CronOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Declare a replica and its schedule (default hourly); refused if it conflicts."""
    data = {
        "name": name,
        "space": space,
        "provider": provider,
        "direction": direction,
        "remote_directory": remote_directory,
        "schedule": schedule(interval, cron),
    }
    s = spec(ReplicaSpec, data, "replica")
    run_create("replica", s, config, submit_run, as_json)


@replica_app.command("list")
def replica_list_cmd(
    space: str | None = typer.Option(None, help="Only this space's replicas."),
    config: str | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List replicas."""
    rows = list_kind("replica", config, space)
    show_resources(rows, as_json, list(kinds.get("replica").columns))


@replica_app.command("sync")
def replica_sync_cmd(
    name: str,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Sync a replica once now: copy what is missing or different; never delete."""
    run_now("replica", "sync", name, config, submit_run, as_json)


# -- profiles ----------------------------------------------------------------------------


def pools(values: list[str]) -> list[dict[str, str]]:
    """`NAME=PATH` -> pool specs; a relative path is made absolute."""
    found = []
    for index, item in enumerate(values):
        name, sep, path = item.partition("=")
        if not sep or not path.strip():
            fail(f"profile.pools.{index}: {item!r} is not NAME=PATH")
        found.append({"name": name.strip(), "path": str(Path(path.strip()).absolute())})
    return found


def rules(values: list[str]) -> list[dict[str, Any]]:
    """`older_than=30d,larger_than=1G,name_pattern=.*\\.log` -> rule specs; '' moves all."""
    found = []
    for index, item in enumerate(values):
        rule: dict[str, Any] = {}
        for part in _RULE_SPLIT.split(item) if item.strip() else []:
            key, sep, value = part.partition("=")
            if not sep:
                fail(f"profile.rules.{index}: {part!r} is not KEY=VALUE")
            key = key.strip()
            rule[key] = seconds(value.strip()) if key == "older_than" else value.strip()
        found.append(rule)
    return found


@profile_app.command("create")
def profile_create_cmd(
    name: str,
    pool: list[str] = typer.Option(
        [], "--pool", help="NAME=PATH, fastest first; repeat, at least twice."
    ),
    rule: list[str] = typer.Option(
        [],
        "--rule",
        help="The i-th --rule moves files of pool i to pool i+1 that match all of "
        "older_than=SECONDS|30d, larger_than=BYTES|1G, name_pattern=REGEX (whole name), "
        "comma-separated; '' moves every file. One fewer than pools.",
    ),
    interval: str | None = IntervalOption,
    cron: str | None = CronOption,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Declare a tiering profile: create missing pools and its schedule (default hourly)."""
    data = {
        "name": name,
        "pools": pools(pool),
        "rules": rules(rule),
        "schedule": schedule(interval, cron),
    }
    s = spec(ProfileSpec, data, "profile")
    run_create("profile", s, config, submit_run, as_json)


@profile_app.command("tier")
def profile_tier_cmd(
    name: str,
    config: str | None = ConfigOption,
    submit_run: bool = SubmitOption,
    as_json: bool = JsonOption,
) -> None:
    """Run one tiering pass now: each rule moves its files one pool down."""
    run_now("profile", "tier", name, config, submit_run, as_json)
