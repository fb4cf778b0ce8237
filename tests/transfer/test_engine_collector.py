"""The objects a process had before a transfer step are left out of the collector's
passes while the step runs, and only then (also when it fails); a plan lists and
filters with no collection at all, and the collector is back when the last plan ends."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from storeflow.models.transfer import parse_definition
from storeflow.tasks.transfer import Entry, deliver, plan_transfer, run_transfer
from storeflow.tasks.transfer.collector import older_objects_frozen
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


def test_a_plan_filters_with_the_collector_paused_and_gives_it_back(dirs: Dirs) -> None:
    src = dirs("src")
    fill(src, 3)
    definition = parse_definition(local_def(src, dirs("dst")))
    assert gc.isenabled()
    seen: list[bool] = []

    def watching(entry: Entry) -> bool:
        seen.append(gc.isenabled())
        return True

    assert len(plan_transfer(definition, file_filter=watching).files) == 3
    assert seen == [False, False, False]
    assert gc.isenabled()

    def broken(entry: Entry) -> bool:
        raise RuntimeError("filter broke")

    with pytest.raises(RuntimeError, match="filter broke"):
        plan_transfer(definition, file_filter=broken)
    assert gc.isenabled()

    # A process that runs with the collector off keeps it off.
    gc.disable()
    try:
        plan_transfer(definition, file_filter=watching)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_collector_comes_back_when_the_last_of_two_plans_ends(dirs: Dirs) -> None:
    src = dirs("src")
    fill(src, 2)
    definition = parse_definition(local_def(src, dirs("dst")))
    inside, release = threading.Event(), threading.Event()

    def held(entry: Entry) -> bool:
        inside.set()
        return release.wait(timeout=30)

    first = threading.Thread(target=plan_transfer, args=(definition,), kwargs={"file_filter": held})
    first.start()
    try:
        assert inside.wait(timeout=30)
        plan_transfer(definition)  # a second plan starts and ends while the first runs
        assert not gc.isenabled()
    finally:
        release.set()
        first.join(timeout=30)
    assert not first.is_alive()
    assert gc.isenabled()


def test_what_a_plan_keeps_joins_the_frozen_objects_while_a_step_holds_the_freeze(
    dirs: Dirs,
) -> None:
    """Inside a freeze (another step running, as a flow's tasks may), the objects a plan
    made while the collector was paused are frozen with the rest when the pause ends, so
    no young pass walks them afterwards; they go back when the last freeze ends."""
    src = dirs("src")
    fill(src, 50)
    definition = parse_definition(local_def(src, dirs("dst")))
    frozen_before = gc.get_freeze_count()
    with older_objects_frozen():
        holding = gc.get_freeze_count()
        plan = plan_transfer(definition)
        # Each planned file and its entry are tracked objects, frozen by now.
        assert gc.get_freeze_count() >= holding + 2 * len(plan.files)
        assert len(plan.files) == 50
    assert gc.get_freeze_count() == frozen_before
