"""The transfer engine: plan, deliver, finalize.

A Prefect flow calls the three steps from its pre/perform/post tasks; ``run_transfer``
chains them for the CLI.

- :func:`plan_transfer` waits for the file watch, lists the source, applies the
  conditionals and the FILTER callable, works out every final name, and checks the
  destinations and the post-copy action before anything is copied.
- :func:`deliver` copies every planned file to every destination under a temporary
  name, in batches on a bounded thread pool, reporting progress and calling the
  AFTER_RESULT_RECEIVED callable per file.
- :func:`finalize` renames the temporary files into place in every destination, writes
  flag files, and only then runs the post-copy action on the source.

A killed run leaves only hidden temporary files behind; a rerun overwrites them and
completes the transfer once.  Plans are plain frozen dataclasses, so they can pass
between Prefect tasks; handlers (connections) are opened by each step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from storeflow.models.transfer import (
    DestinationSpec,
    SourceSpec,
    TransferDefinition,
    load_definition,
)
from storeflow.tasks.transfer import names, selection
from storeflow.tasks.transfer.entries import Entry
from storeflow.tasks.transfer.errors import DestinationMissing, NameCollision, NoFilesFound
from storeflow.tasks.transfer.handler import Spec, TransferHandler
from storeflow.tasks.transfer.registry import open_handler
from storeflow.tasks.transfer.streams import CHUNK

HandlerFactory = Callable[[Spec], TransferHandler]


@dataclass(frozen=True, slots=True)
class PlannedFile:
    """A source file and its final name in each destination (same order as the list)."""

    entry: Entry
    targets: tuple[str, ...]


@dataclass(frozen=True)
class TransferPlan:
    definition: TransferDefinition
    files: tuple[PlannedFile, ...]
    #: Files the watch saw (the trigger files when watching a separate one).
    watched: tuple[Entry, ...] = ()
    #: Names the FILTER callable skipped.
    skipped: tuple[str, ...] = ()
    #: Source name -> path after the post-copy action (None: deleted).
    post_copy: tuple[tuple[str, str | None], ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.entry.size for f in self.files)

    @property
    def watch_only(self) -> bool:
        watch = self.definition.source.file_watch
        return watch is not None and watch.watch_only


@dataclass(frozen=True, slots=True)
class CopyCounters:
    """How far a delivery got: files and bytes done of the plan's totals."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int

    @property
    def percent(self) -> float:
        if self.bytes_total:
            return 100.0 * self.bytes_done / self.bytes_total
        return 100.0 * self.files_done / self.files_total if self.files_total else 100.0


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file delivered (under its temporary name) to every destination."""

    entry: Entry
    #: Final path in each destination.
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class Delivery:
    files: int
    bytes: int
    seconds: float


@dataclass(frozen=True)
class TransferResult:
    files: tuple[str, ...]
    bytes: int
    destinations: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    watched: tuple[str, ...] = ()
    post_copy: str | None = None
    seconds: float = 0.0
    delivered: tuple[FileResult, ...] = field(default=(), repr=False)


FileFilter = Callable[[Entry], bool]
AfterResult = Callable[[FileResult], None]
ProgressHook = Callable[[CopyCounters], None]


@contextlib.contextmanager
def _opened(specs: Sequence[Spec], factory: HandlerFactory) -> Iterator[list[TransferHandler]]:
    handlers: list[TransferHandler] = []
    try:
        for spec in specs:
            handlers.append(factory(spec))
        yield handlers
    finally:
        for handler in handlers:
            handler.tidy()


def _as_definition(definition: TransferDefinition | str | Path) -> TransferDefinition:
    if isinstance(definition, TransferDefinition):
        return definition
    return load_definition(definition)


# -- plan ---------------------------------------------------------------------------------


def _targets(
    entries: list[Entry], destinations: Sequence[DestinationSpec]
) -> list[tuple[str, ...]]:
    per_file: list[list[str]] = [[] for _ in entries]
    for index, dest in enumerate(destinations):
        seen: dict[str, str] = {}
        for row, entry in zip(per_file, entries, strict=True):
            final = entry.name
            if dest.rename is not None:
                final = names.renamed(
                    entry.name, dest.rename.pattern, dest.rename.sub, f"destination[{index}].rename"
                )
            if final in seen:
                raise NameCollision(
                    f"destination[{index}]: {seen[final]!r} and {entry.name!r} would both "
                    f"be delivered as {final!r}"
                )
            seen[final] = entry.name
            row.append(final)
    return [tuple(row) for row in per_file]


def _same_place(source: SourceSpec, dest: DestinationSpec) -> bool:
    return source.protocol == dest.protocol and posixpath.normpath(
        source.directory
    ) == posixpath.normpath(dest.directory)


def _check_destinations(
    plan_files: list[PlannedFile],
    source: SourceSpec,
    destinations: Sequence[DestinationSpec],
    handlers: Sequence[TransferHandler],
) -> None:
    for index, (dest, handler) in enumerate(zip(destinations, handlers, strict=True)):
        if not handler.is_dir(dest.directory):
            if not dest.create_directory_if_not_exists:
                raise DestinationMissing(
                    f"destination[{index}].directory {dest.directory!r} does not exist "
                    "(set createDirectoryIfNotExists to create it)"
                )
            handler.make_dirs(dest.directory)
        if _same_place(source, dest):
            for planned in plan_files:
                if planned.targets[index] == planned.entry.name:
                    raise NameCollision(
                        f"destination[{index}] is the source directory: {planned.entry.name!r}"
                        " would overwrite itself"
                    )


def plan_transfer(
    definition: TransferDefinition | str | Path,
    *,
    file_filter: FileFilter | None = None,
    open_handler: HandlerFactory = open_handler,
    poll_interval: float = 1.0,
) -> TransferPlan:
    """Decide what to copy where, and refuse anything unsafe before touching data.

    ``file_filter`` (the FILTER stage) sees each file that passed the conditionals and
    returns False to skip it.
    """
    definition = _as_definition(definition)
    source = definition.source
    destinations = definition.destination
    with _opened([source, *destinations], open_handler) as handlers:
        src, dst = handlers[0], handlers[1:]
        watched: list[Entry] = []
        if source.file_watch is not None:
            watched = selection.watch(src, source, source.file_watch, poll_interval=poll_interval)
            if source.file_watch.watch_only:
                return TransferPlan(definition, (), tuple(watched))
        entries = selection.apply_size_and_age(
            src.list_entries(source.directory, source.file_regex),
            source.conditionals,
            time.time(),
        )
        selection.check_count(entries, source.conditionals)
        if not entries and source.error:
            raise NoFilesFound(
                f"no file in {source.directory!r} matches {source.file_regex!r}"
                + (" within the conditionals" if source.conditionals else "")
            )
        skipped: list[str] = []
        if file_filter is not None:
            kept = []
            for entry in entries:
                if file_filter(entry):
                    kept.append(entry)
                else:
                    skipped.append(entry.name)
            entries = kept
        files = [
            PlannedFile(e, t) for e, t in zip(entries, _targets(entries, destinations), strict=True)
        ]
        _check_destinations(files, source, destinations, dst)
        post_copy = src.post_copy_targets(e.name for e in entries)
        return TransferPlan(
            definition, tuple(files), tuple(watched), tuple(skipped), tuple(post_copy.items())
        )


# -- deliver ------------------------------------------------------------------------------


class _Meter:
    """Thread-safe counters that call the progress hook at most every ``interval`` s."""

    def __init__(self, plan: TransferPlan, hook: ProgressHook | None, interval: float) -> None:
        self.files_total = len(plan.files)
        self.bytes_total = plan.total_bytes * max(1, len(plan.definition.destination))
        self.files = 0
        self.bytes = 0
        self.hook = hook
        self.interval = interval
        self.last = 0.0
        self.lock = threading.Lock()

    def add(self, files: int = 0, nbytes: int = 0) -> None:
        with self.lock:
            self.files += files
            self.bytes += nbytes
            if self.hook is not None:
                now = time.monotonic()
                if now - self.last >= self.interval:
                    self.last = now
                    self.hook(self.snapshot())

    def snapshot(self) -> CopyCounters:
        return CopyCounters(self.files, self.files_total, self.bytes, self.bytes_total)

    def done(self) -> None:
        if self.hook is not None:
            with self.lock:
                self.hook(self.snapshot())


def _batches(files: Sequence[PlannedFile], size: int) -> Iterator[Sequence[PlannedFile]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def deliver(
    plan: TransferPlan,
    *,
    progress: ProgressHook | None = None,
    after_result: AfterResult | None = None,
    max_workers: int = 4,
    batch_size: int = 64,
    progress_interval: float = 0.25,
    open_handler: HandlerFactory = open_handler,
) -> Delivery:
    """Copy every planned file to every destination under its temporary name.

    Work is split into batches of ``batch_size`` files run by up to ``max_workers``
    threads.  ``progress`` receives counters (throttled to one call per
    ``progress_interval`` seconds, plus a final one); ``after_result`` is called once per
    file when all destinations hold it.  Nothing appears under a final name here.  On
    failure the temporary files of this plan are removed and the error is raised.
    """
    started = time.monotonic()
    definition = plan.definition
    destinations = definition.destination
    meter = _Meter(plan, progress, progress_interval)
    if not plan.files or not destinations:
        meter.done()
        return Delivery(0, 0, 0.0)
    modes = [d.mode_bits for d in destinations]
    action = definition.source.post_copy_action
    with _opened([definition.source, *destinations], open_handler) as handlers:
        src, dst = handlers[0], handlers[1:]
        for handler in dst:
            handler.sync_writes = action is not None and action.action == "delete"
        callback_lock = threading.Lock()

        def count_bytes(n: int) -> None:
            meter.add(nbytes=n)

        def run_batch(batch: Sequence[PlannedFile]) -> None:
            for planned in batch:
                finals = []
                # Big files report bytes as they go; small ones once done (cheaper).
                large = planned.entry.size >= CHUNK
                for index, handler in enumerate(dst):
                    final = planned.targets[index]
                    handler.receive(
                        src,
                        planned.entry,
                        handler.temp_path(final),
                        modes[index],
                        count_bytes if large else None,
                    )
                    finals.append(handler.join(destinations[index].directory, final))
                    if not large:
                        meter.add(nbytes=planned.entry.size)
                if after_result is not None:
                    with callback_lock:
                        after_result(FileResult(planned.entry, tuple(finals)))
                meter.add(files=1)

        try:
            with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="sf-copy") as pool:
                futures: list[Future[None]] = [
                    pool.submit(run_batch, batch) for batch in _batches(plan.files, batch_size)
                ]
                finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in futures:
                    future.cancel()
                for future in finished:
                    future.result()  # raises the first failure
        except BaseException:
            _remove_temps(plan, dst)
            raise
    meter.done()
    return Delivery(len(plan.files), meter.bytes, time.monotonic() - started)


def _remove_temps(plan: TransferPlan, handlers: Sequence[TransferHandler]) -> None:
    for index, handler in enumerate(handlers):
        for planned in plan.files:
            temp = handler.temp_path(planned.targets[index])
            with contextlib.suppress(Exception):
                if handler.exists(temp):
                    handler.delete(temp)


# -- finalize -----------------------------------------------------------------------------


def finalize(
    plan: TransferPlan,
    *,
    open_handler: HandlerFactory = open_handler,
) -> TransferResult:
    """Move delivered files into place everywhere, write flags, then the post-copy action.

    Safe to repeat after a failure part-way: files already in place are left alone.
    """
    definition = plan.definition
    source = definition.source
    destinations = definition.destination
    action = source.post_copy_action
    with _opened([source, *destinations], open_handler) as handlers:
        src, dst = handlers[0], handlers[1:]
        if plan.files:
            for index, handler in enumerate(dst):
                handler.move_files_to_final_location(f.targets[index] for f in plan.files)
            if action is not None and action.action == "delete":
                # The source goes away next: make sure the copies are on stable storage.
                for handler in dst:
                    handler.flush()
            for dest, handler in zip(destinations, dst, strict=True):
                if dest.flags is not None:
                    handler.write_flag(dest.flags.full_path)
            if plan.post_copy:
                src.apply_post_copy(dict(plan.post_copy))
    return TransferResult(
        files=tuple(f.entry.name for f in plan.files),
        bytes=plan.total_bytes,
        destinations=tuple(d.directory for d in destinations),
        skipped=plan.skipped,
        watched=tuple(e.name for e in plan.watched),
        post_copy=action.action if action is not None and plan.files else None,
    )


def run_transfer(
    definition: TransferDefinition | str | Path,
    *,
    file_filter: FileFilter | None = None,
    after_result: AfterResult | None = None,
    progress: ProgressHook | None = None,
    max_workers: int = min(8, (os.cpu_count() or 2) * 2),
    batch_size: int = 64,
    poll_interval: float = 1.0,
    open_handler: HandlerFactory = open_handler,
) -> TransferResult:
    """Plan, deliver and finalize one definition (a model or a .json/.yaml path)."""
    started = time.monotonic()
    plan = plan_transfer(
        definition, file_filter=file_filter, open_handler=open_handler, poll_interval=poll_interval
    )
    delivered: list[FileResult] = []

    def record(result: FileResult) -> None:
        delivered.append(result)
        if after_result is not None:
            after_result(result)

    deliver(
        plan,
        progress=progress,
        after_result=record,
        max_workers=max_workers,
        batch_size=batch_size,
        open_handler=open_handler,
    )
    result = finalize(plan, open_handler=open_handler)
    return dataclasses.replace(
        result, seconds=time.monotonic() - started, delivered=tuple(delivered)
    )
