"""Shared fixtures: a fast policy, real files, and a check that every worker
a test started is gone when it ends."""

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from storeflow.sandbox.settings import SandboxSettings


@pytest.fixture(autouse=True, scope="session")
def bwrap_installed() -> None:
    # No silent skips: the jail is part of the product (bootstrap installs it).
    if shutil.which("bwrap") is None:
        pytest.fail(
            "bubblewrap (bwrap) is missing: run scripts/bootstrap.sh (apt-get install bubblewrap)",
            pytrace=False,
        )


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            found.add(int(entry))
    return found


@pytest.fixture(autouse=True)
def no_leftover_workers() -> Iterator[None]:
    before = _children()
    yield
    deadline = time.monotonic() + 5
    while (left := _children() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"worker processes left running: {sorted(left)}"


@pytest.fixture
def settings(tmp_path: Path) -> SandboxSettings:
    return SandboxSettings(
        call_timeout_s=3.0,
        memory_limit_mb=128,
        output_limit_bytes=16 * 1024,
        languages={
            "python": {"hooks_dir": tmp_path / "python-hooks"},
            "javascript": {"hooks_dir": tmp_path / "javascript-hooks"},
        },
    )


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A real file with distinct, nanosecond-precise times."""
    path = tmp_path / "data" / "report.csv"
    path.parent.mkdir()
    path.write_text("a,b\n1,2\n")
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_600_000_000_987_654_321))
    return path
