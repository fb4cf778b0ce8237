"""The objects a process had before a transfer step are left out of the collector's
passes while the step runs, and only then (also when it fails)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import deliver, plan_transfer, run_transfer
from tests.transfer.conftest import local_def

Dirs = Callable[[str], Path]


def fill(directory: Path, count: int) -> None:
    for i in range(count):
        path = directory / f"f{i:05}"
        path.write_bytes(b"x" * (i % 7))
        os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_700_000_000_000_000_000 + i))


def test_nothing_stays_frozen_after_a_transfer_or_a_failed_step(dirs: Dirs) -> None:
    src, dst = dirs("src"), dirs("dst")
    fill(src, 10)
    frozen_before = gc.get_freeze_count()
    seen: list[int] = []

    def during(results: object) -> None:
        seen.append(gc.get_freeze_count())

    run_transfer(parse_definition(local_def(src, dst)), after_results=during, max_workers=1)
    # The objects the process had were frozen while the transfer ran, and only then.
    assert seen and all(count > frozen_before for count in seen)
    assert gc.get_freeze_count() == frozen_before

    def fail(results: object) -> None:
        raise RuntimeError("callback broke")

    plan = plan_transfer(parse_definition(local_def(src, dirs("dst2"))))
    with pytest.raises(RuntimeError, match="callback broke"):
        deliver(plan, after_results=fail)
    assert gc.get_freeze_count() == frozen_before
