"""`storeflow provider|replica|profile ...` through the CLI: lifecycles, a sync, a tiering
pass, a refused conflict, and bad input (exit 2, the field named, nothing changed)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from storeflow.cli.app import app
from storeflow.cli.common import cells
from storeflow.models.schemas import ResourceView
from storeflow.tasks import schedules
from tests.flows_transfer.conftest import make_files

runner = CliRunner()
DAY = 86_400


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def ok_json(*args: str) -> Any:
    code, out, err = invoke(*args, "--json")
    assert code == 0, (out, err)
    return json.loads(out)


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_provider_and_replica_lifecycle_sync_and_conflict(
    storeflow_home: Path, tmp_path: Path
) -> None:
    assert invoke("space", "create", "lab")[0] == 0
    space = storeflow_home / "storage" / "spaces" / "lab"
    make_files(space, {"a.txt": b"alpha", "with space.bin": b"b" * 4096})
    make_files(space / "raw" / "day 1", {"c.dat": b"gamma"})
    archive = tmp_path / "archive"
    archive.mkdir()

    created = ok_json("provider", "create", "archive", "--directory", str(archive))
    assert created["state"] == "Active"
    assert created["result"]["spec"] == {
        "name": "archive",
        "protocol": "local",
        "directory": str(archive),
        "block": None,
    }
    [listed] = ok_json("provider", "list")
    assert (listed["name"], listed["status"]) == ("archive", "ACTIVE")
    assert ok_json("provider", "show", "archive")["spec"]["directory"] == str(archive)

    created = ok_json(
        "replica", "create", "lab-up", "--space", "lab", "--provider", "archive",
        "--direction", "upstream", "--interval", "15m",
    )  # fmt: skip
    assert created["state"] == "Active", created
    assert created["result"]["spec"]["schedule"] == {"interval": 900, "cron": None}
    assert schedules.read("replica-sync/lab-up") is not None
    assert [r["name"] for r in ok_json("replica", "list", "--space", "lab")] == ["lab-up"]
    shown = ok_json("replica", "show", "lab-up")
    assert shown["spec"]["direction"] == "upstream"
    assert shown["state"]["deployment"] == "replica-sync/lab-up"

    # One sync now: the space's tree lands under <provider>/<space name>, mtimes kept.
    synced = ok_json("replica", "sync", "lab-up")
    assert synced["state"] == "Synced", synced
    assert sorted(synced["result"]["upstream"]["files"]) == [
        "a.txt",
        "raw/day 1/c.dat",
        "with space.bin",
    ]
    assert files(archive / "lab") == files(space)
    assert (archive / "lab" / "a.txt").stat().st_mtime == (space / "a.txt").stat().st_mtime
    assert ok_json("replica", "show", "lab-up")["state"]["last"]["upstream"]["files"]
    code, out, _ = invoke("replica", "sync", "lab-up")  # the human form says what moved
    assert code == 0 and "Synced" in out and "upstream 0 files" in out

    # Same space, same direction: refused with the reason, exit 1, nothing recorded.
    code, out, err = invoke(
        "replica", "create", "lab-up-2", "--space", "lab", "--provider", "archive",
        "--direction", "upstream",
    )  # fmt: skip
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Refused" in err
    assert "replica 'lab-up' already syncs space 'lab' upstream" in err
    assert schedules.read("replica-sync/lab-up-2") is None
    assert [r["name"] for r in ok_json("replica", "list")] == ["lab-up"]

    # The provider cannot go while the replica uses it.
    code, _, err = invoke("provider", "delete", "archive")
    assert code == 1 and "used by replicas (lab-up)" in err

    assert ok_json("replica", "delete", "lab-up")["state"] == "Deleted"
    assert schedules.read("replica-sync/lab-up") is None
    assert ok_json("provider", "delete", "archive")["state"] == "Deleted"
    assert ok_json("space", "delete", "lab", "--force")["state"] == "Deleted"
    assert ok_json("replica", "list") == [] and ok_json("provider", "list") == []
    assert files(archive / "lab")  # the replica's data stays


def put(path: Path, data: bytes, age: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def test_profile_lifecycle_and_one_tiering_pass(storeflow_home: Path, tmp_path: Path) -> None:
    hot, warm, cold = (tmp_path / p for p in ("hot", "warm", "cold"))
    created = ok_json(
        "profile", "create", "tiers",
        "--pool", f"hot={hot}", "--pool", f"warm={warm}", "--pool", f"cold={cold}",
        "--rule", r"name_pattern=.*\.(log|txt),older_than=7d",
        "--rule", "larger_than=1K",
        "--cron", "0 3 * * *",
    )  # fmt: skip
    assert created["state"] == "Active", created
    assert created["result"]["spec"]["rules"] == [
        {"older_than": 7 * DAY, "larger_than": None, "name_pattern": r".*\.(log|txt)"},
        {"older_than": None, "larger_than": 1024, "name_pattern": ".*"},
    ]
    assert hot.is_dir() and warm.is_dir() and cold.is_dir()
    assert schedules.read("profile-tier/tiers") is not None
    [listed] = ok_json("profile", "list")
    assert listed["name"] == "tiers" and len(listed["spec"]["pools"]) == 3
    code, out, _ = invoke("profile", "list")
    assert code == 0 and "tiers" in out
    row = ResourceView.model_validate(listed)
    assert cells(row, ["pools", "schedule"]) == ["hot -> warm -> cold", "cron 0 3 * * *"]

    put(hot / "old.log", b"o" * 10, age=30 * DAY)  # rule 0: to warm
    put(hot / "sub" / "old.txt", b"t", age=30 * DAY)  # rule 0, nested: to warm/sub
    put(hot / "new.log", b"n", age=DAY)  # too young: stays
    put(hot / "old.bin", b"b", age=30 * DAY)  # wrong name: stays
    put(warm / "big.bin", b"B" * 4096, age=DAY)  # rule 1: to cold
    put(warm / "small.bin", b"s", age=DAY)  # too small: stays

    tiered = ok_json("profile", "tier", "tiers")

    assert tiered["state"] == "Tiered", tiered
    assert set(files(hot)) == {"new.log", "old.bin"}
    assert set(files(warm)) == {"old.log", "sub/old.txt", "small.bin"}  # old.log: one pool only
    assert set(files(cold)) == {"big.bin"}
    assert [(s["from"], s["to"], sorted(s["files"])) for s in tiered["result"]] == [
        ("hot", "warm", ["old.log", "sub/old.txt"]),
        ("warm", "cold", ["big.bin"]),
    ]
    assert ok_json("profile", "show", "tiers")["state"]["last_run"]

    assert ok_json("profile", "delete", "tiers")["state"] == "Deleted"
    assert schedules.read("profile-tier/tiers") is None
    assert ok_json("profile", "list") == []
    assert set(files(cold)) == {"big.bin"}  # pools and their files stay


def bad(*args: str) -> str:
    """Run a command that must be refused as bad input; return its one-line error."""
    code, out, err = invoke(*args)
    assert code == 2, (code, out, err)
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_bad_input_exits_two_naming_the_field_and_changes_nothing(
    storeflow_home: Path, tmp_path: Path
) -> None:
    where = str(tmp_path / "p")
    assert bad("provider", "create", "x", "--protocol", "ftp", "--directory", where).startswith(
        "error: provider.protocol:"
    )
    assert "provider.directory: Field required" in bad("provider", "create", "x")
    assert "'block'" in bad("provider", "create", "x", "--protocol", "smb", "--directory", "/")
    assert "provider.name:" in bad("provider", "create", "../x", "--directory", where)

    replica = ("replica", "create", "r", "--space", "s", "--provider", "p")
    assert "replica.direction: Field required" in bad(*replica)
    assert "replica.direction:" in bad(*replica, "--direction", "sideways")
    assert "replica.schedule.interval:" in bad(
        *replica, "--direction", "upstream", "--interval", "10"
    )
    assert "give exactly one of 'interval' or 'cron'" in bad(
        *replica, "--direction", "upstream", "--interval", "1h", "--cron", "0 2 * * *"
    )
    assert "replica.remote_directory:" in bad(
        *replica, "--direction", "upstream", "--remote-directory", "../up"
    )

    hot, cold = f"hot={tmp_path / 'hot'}", f"cold={tmp_path / 'cold'}"
    assert "profile.pools:" in bad("profile", "create", "t", "--pool", hot)
    assert "profile.pools.1: 'cold' is not NAME=PATH" in bad(
        "profile", "create", "t", "--pool", hot, "--pool", "cold"
    )
    assert "2 pools need 1 rules, got 0" in bad(
        "profile", "create", "t", "--pool", hot, "--pool", cold
    )
    assert "profile.rules.0.name_pattern: not a valid regular expression" in bad(
        "profile", "create", "t", "--pool", hot, "--pool", cold, "--rule", "name_pattern=("
    )
    assert "profile.rules.0.newer_than: unknown field" in bad(
        "profile", "create", "t", "--pool", hot, "--pool", cold, "--rule", "newer_than=1d"
    )
    assert "profile.rules.0.larger_than:" in bad(
        "profile", "create", "t", "--pool", hot, "--pool", cold, "--rule", "larger_than=huge"
    )

    assert "replica 'nope' does not exist" in bad("replica", "sync", "nope")
    assert "profile 'nope' does not exist" in bad("profile", "tier", "nope")
    assert "provider 'nope' does not exist" in bad("provider", "delete", "nope")
    assert "PREFECT_API_URL" in bad("provider", "create", "x", "--directory", where, "--submit")

    # Nothing was recorded, and no pool directory was made.
    for kind in ("provider", "replica", "profile"):
        assert ok_json(kind, "list") == []
    assert not (tmp_path / "hot").exists() and not (tmp_path / "p").exists()
