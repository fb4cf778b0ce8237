"""Tiering profiles: pools, rules and the scheduled tiering flow, on real directories."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from storeflow.blocks.config import StoreflowConfig
from storeflow.flows.profiles import profile_create, profile_delete, profile_tier
from storeflow.models.replicas import ProfileSpec
from storeflow.tasks import schedules
from tests.flows_transfer.conftest import run
from tests.lifecycle.conftest import exists

DAY = 86_400


def put(path: Path, data: bytes, age: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def spec(tmp_path: Path, name: str = "hot-warm-cold") -> ProfileSpec:
    return ProfileSpec.model_validate(
        {
            "name": name,
            "pools": [
                {"name": "hot", "path": str(tmp_path / "hot")},
                {"name": "warm", "path": str(tmp_path / "warm")},
                {"name": "cold", "path": str(tmp_path / "cold")},
            ],
            "rules": [
                {"name_pattern": r".*\.log", "older_than": 7 * DAY},
                {"larger_than": "1K"},
            ],
            "schedule": {"cron": "0 3 * * *"},
        }
    )


def test_tiering_moves_the_right_files_one_pool_per_run(
    config: StoreflowConfig, tmp_path: Path
) -> None:
    profile = spec(tmp_path)
    state = run(profile_create, spec=profile)
    assert state.name == "Active", state.message
    hot, warm, cold = (tmp_path / p for p in ("hot", "warm", "cold"))
    assert hot.is_dir() and warm.is_dir() and cold.is_dir()

    put(hot / "old.log", b"o" * 2000, age=30 * DAY)  # matches rule 0: to warm
    put(hot / "projects" / "a b.log", b"x" * 10, age=30 * DAY)  # nested: to warm/projects
    put(hot / "new.log", b"n", age=DAY)  # too young: stays
    put(hot / "old.txt", b"t", age=30 * DAY)  # wrong name: stays
    put(warm / "big.bin", b"b" * 4096, age=DAY)  # larger than 1K: to cold
    put(warm / "small.bin", b"s" * 10, age=DAY)  # stays
    mtime = (hot / "old.log").stat().st_mtime

    first = run(profile_tier, name="hot-warm-cold")

    assert first.name == "Tiered", first.message
    assert files(hot) == {"new.log", "old.txt"}
    assert files(warm) == {"old.log", "projects/a b.log", "small.bin"}
    assert files(cold) == {"big.bin"}
    assert (warm / "old.log").stat().st_mtime == mtime
    steps = first.result()
    assert [(s["from"], s["to"], sorted(s["files"])) for s in steps] == [
        ("hot", "warm", ["old.log", "projects/a b.log"]),
        ("warm", "cold", ["big.bin"]),
    ]
    assert not (cold / "projects").exists()  # no empty mirror directories

    # old.log (2000 bytes) arrived in warm this run; the next run takes it on to cold.
    second = run(profile_tier, name="hot-warm-cold")
    assert second.name == "Tiered"
    assert files(warm) == {"projects/a b.log", "small.bin"}
    assert files(cold) == {"big.bin", "old.log"}


def test_profile_schedule_is_created_and_removed(config: StoreflowConfig, tmp_path: Path) -> None:
    assert run(profile_create, spec=spec(tmp_path, "tiers")).name == "Active"
    deployment = schedules.read("profile-tier/tiers")
    assert deployment is not None and deployment.parameters == {"name": "tiers"}
    [schedule] = deployment.schedules
    assert schedule.schedule.cron == "0 3 * * *"  # type: ignore[union-attr]

    assert run(profile_delete, name="tiers").name == "Deleted"
    assert schedules.read("profile-tier/tiers") is None
    assert not exists(config, "profile", "tiers")
    assert (tmp_path / "hot").is_dir()  # pools and their data stay


def test_overlapping_pools_are_refused(config: StoreflowConfig, tmp_path: Path) -> None:
    assert run(profile_create, spec=spec(tmp_path, "first")).name == "Active"
    clash = ProfileSpec.model_validate(
        {
            "name": "second",
            "pools": [
                {"name": "a", "path": str(tmp_path / "warm" / "inner")},
                {"name": "b", "path": str(tmp_path / "elsewhere")},
            ],
            "rules": [{}],
        }
    )
    state = run(profile_create, spec=clash)
    assert state.name == "Refused" and "overlaps pool" in (state.message or "")
    assert schedules.read("profile-tier/second") is None

    with pytest.raises(ValueError, match="3 pools need 2 rules"):
        ProfileSpec.model_validate({**spec(tmp_path).model_dump(), "rules": [{}]})
