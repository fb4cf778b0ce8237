"""Which files a source offers: conditionals and the file watch."""

from __future__ import annotations

import time
from collections.abc import Callable

from storeflow.models.transfer import Conditionals, FileWatch, SourceSpec
from storeflow.tasks.transfer.entries import Entry
from storeflow.tasks.transfer.errors import ConditionNotMet, FileWatchTimeout
from storeflow.tasks.transfer.handler import TransferHandler

Clock = Callable[[], float]
Sleep = Callable[[float], None]


def apply_size_and_age(entries: list[Entry], cond: Conditionals | None, now: float) -> list[Entry]:
    """Keep the entries inside the ``size`` and ``age`` bounds (any bound given applies)."""
    if cond is None:
        return entries
    return [
        e
        for e in entries
        if (cond.size is None or cond.size.admits(e.size))
        and (cond.age is None or cond.age.admits(e.age(now)))
    ]


def count_problem(entries: list[Entry], cond: Conditionals | None) -> str | None:
    """Why the number of files breaks ``count``, or None when it is fine."""
    count = cond.count if cond is not None else None
    if count is None:
        return None
    if count.min_count is not None and len(entries) < count.min_count:
        return f"{len(entries)} file(s) found, count.minCount is {count.min_count}"
    if count.max_count is not None and len(entries) > count.max_count:
        return f"{len(entries)} file(s) found, count.maxCount is {count.max_count}"
    return None


def check_count(entries: list[Entry], cond: Conditionals | None) -> None:
    problem = count_problem(entries, cond)
    if problem is not None:
        raise ConditionNotMet(problem)


def _signature(entries: list[Entry]) -> tuple[tuple[str, int, int], ...]:
    return tuple((e.name, e.size, e.mtime_ns) for e in entries)


def watch(
    handler: TransferHandler,
    source: SourceSpec,
    spec: FileWatch,
    *,
    poll_interval: float = 1.0,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    wall_clock: Clock = time.time,
) -> list[Entry]:
    """Wait until matching files exist and have stopped growing; return them.

    As in OTF, the conditionals apply during the watch only with
    ``conditionals.checkDuringFilewatch``; otherwise the first complete matching file
    ends the watch and the conditionals apply to the listing that follows.  A file
    counts as complete once two polls ``poll_interval`` apart see the same size and mtime.
    """
    directory = spec.directory or source.directory
    pattern = spec.file_regex or source.file_regex
    during = source.conditionals is not None and source.conditionals.check_during_filewatch
    cond = source.conditionals if during else None
    deadline = clock() + spec.timeout
    previous: tuple[tuple[str, int, int], ...] | None = None
    while True:
        entries = apply_size_and_age(handler.list_entries(directory, pattern), cond, wall_clock())
        ready = bool(entries) and count_problem(entries, cond) is None
        current = _signature(entries) if ready else None
        if ready and current == previous:
            return entries
        previous = current
        if clock() >= deadline:
            if not source.error:
                return []  # OTF: "valid files not found after timeout", not an error
            raise FileWatchTimeout(
                f"fileWatch: no complete file matching {pattern!r} in {directory!r} "
                f"within {spec.timeout:g}s"
            )
        sleep(min(poll_interval, max(0.0, deadline - clock())))
