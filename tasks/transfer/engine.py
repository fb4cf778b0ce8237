"""The transfer engine: plan, deliver, finalize.

A Prefect flow calls the three steps from its pre/perform/post tasks; ``run_transfer``
chains them for the CLI.

- :func:`plan_transfer` waits for the file watch, lists the source, applies the
  conditionals and the FILTER callable, works out every final name, and checks the
  destinations and the post-copy action before anything is copied.
- :func:`deliver` copies every planned file to every destination under a temporary
  name, in batches, reporting progress and calling the AFTER_RESULT_RECEIVED callable
  once per batch.  Between local directories a batch is one call into a native loop
  (tasks/transfer/native.py) that runs without the GIL, so worker threads scale with
  cores; elsewhere threads wait on the network, one file at a time each.
- :func:`finalize` renames the temporary files into place in every destination, writes
  flag files, and only then runs the post-copy action on the source.

A killed run leaves only hidden temporary files behind; a rerun overwrites them and
completes the transfer once.  Plans are plain frozen dataclasses, so they can pass
between Prefect tasks.  A run opens its handlers (connections) once with
:func:`open_handlers` and passes them to each step; a step called without them opens
and closes its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import posixpath
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from storeflow.models.transfer import (
    DestinationSpec,
    SourceSpec,
    TransferDefinition,
    load_definition,
)
from storeflow.tasks.transfer import names, native, selection
from storeflow.tasks.transfer.collector import collector_paused, older_objects_frozen
from storeflow.tasks.transfer.entries import Entry
from storeflow.tasks.transfer.errors import (
    DestinationMissing,
    NameCollision,
    NoFilesFound,
    ProtocolError,
)
from storeflow.tasks.transfer.handler import Spec, TransferHandler
from storeflow.tasks.transfer.local import LocalTransfer
from storeflow.tasks.transfer.registry import open_handler
from storeflow.tasks.transfer.streams import CHUNK

HandlerFactory = Callable[[Spec], TransferHandler]


class PlannedFile:
    """A source file and its final name in each destination (same order as the list).

    Immutable, compared and pickled by (entry, targets) as a frozen dataclass would be.
    A plan holds one per file: where every final name is the entry's own (no rename, the
    usual case) only how many there are is kept, not a tuple per file (48 bytes of a
    plan's ~450 per file); ``targets`` builds the tuple when asked."""

    __slots__ = ("_targets", "entry")

    entry: Entry
    _targets: tuple[str, ...] | int

    def __init__(self, entry: Entry, targets: tuple[str, ...]) -> None:
        name = entry.name
        kept: tuple[str, ...] | int = targets
        if all(t == name for t in targets):
            kept = len(targets)
        object.__setattr__(self, "entry", entry)
        object.__setattr__(self, "_targets", kept)

    @classmethod
    def unrenamed(cls, entry: Entry, count: int) -> PlannedFile:
        """``entry`` under its own name in ``count`` destinations (no tuple built)."""
        planned = cls.__new__(cls)
        object.__setattr__(planned, "entry", entry)
        object.__setattr__(planned, "_targets", count)
        return planned

    @property
    def targets(self) -> tuple[str, ...]:
        kept = self._targets
        if type(kept) is int:
            return (self.entry.name,) * kept
        return kept  # type: ignore[return-value]

    def target(self, index: int) -> str:
        """The final name in destination ``index`` (``targets[index]``, no tuple built)."""
        kept = self._targets
        if type(kept) is int:
            if not 0 <= index < kept and not -kept <= index < 0:
                raise IndexError(index)
            return self.entry.name
        return kept[index]  # type: ignore[index]

    def __setattr__(self, name: str, value: object) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not PlannedFile:
            return NotImplemented
        assert isinstance(other, PlannedFile)
        return self.entry == other.entry and self.targets == other.targets

    def __hash__(self) -> int:
        return hash((self.entry, self.targets))

    def __repr__(self) -> str:
        return f"PlannedFile(entry={self.entry!r}, targets={self.targets!r})"

    def __reduce__(self) -> tuple[type[PlannedFile], tuple[Entry, tuple[str, ...]]]:
        return (PlannedFile, (self.entry, self.targets))


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
#: FILTER for many files at once: one verdict per entry, in order.  One that also has
#: a ``chunks`` method (an iterator of chunks in, an iterator of their verdicts out, in
#: order) is given every chunk of a plan that way, so it may answer them in a pipeline.
BatchFilter = Callable[[Sequence[Entry]], Sequence[bool]]
AfterResult = Callable[[FileResult], None]
#: AFTER_RESULT_RECEIVED for a batch of files delivered together.
AfterResults = Callable[[Sequence[FileResult]], None]
#: An AfterResults hook's ``chunks``, when it has one: the delivered batches as one
#: stream, one item out as each is done (so the hook may pipeline them).
AfterStream = Callable[[Iterator[Sequence[FileResult]]], Iterator[object]]
ProgressHook = Callable[[CopyCounters], None]

#: Entries per call of a batch filter: a sandbox round trip per callback costs the host
#: about 0.2 ms whatever its size (10,000 files through one Python callback: 21 ms of
#: host CPU in chunks of 256, 15 ms in chunks of 1,024).
FILTER_BATCH = 1024
#: At most this many delivered files per call of a streaming AFTER_RESULT_RECEIVED hook
#: (see _AfterThread): batches that wait for it are joined up to this (a sandbox round
#: trip costs the host about 0.2 ms whatever its size).
AFTER_JOIN = 1024
#: Files per batch of a delivery, unless the caller says otherwise (the transfer flow's
#: default too): a native call and an AFTER_RESULT_RECEIVED round trip per batch.
DEFAULT_BATCH_SIZE = 256


@dataclass
class Handlers:
    """The open handlers of one run: the source's, then one per destination."""

    source: TransferHandler
    destinations: list[TransferHandler]

    def close(self) -> None:
        for handler in (self.source, *self.destinations):
            with contextlib.suppress(Exception):
                handler.tidy()


@contextlib.contextmanager
def open_handlers(
    definition: TransferDefinition, factory: HandlerFactory = open_handler
) -> Iterator[Handlers]:
    """Open the source's and every destination's handler once, for every step of a run;
    close them all on the way out (also when opening one of them fails)."""
    opened: list[TransferHandler] = []
    try:
        specs: list[Spec] = [definition.source, *definition.destination]
        for spec in specs:
            opened.append(factory(spec))
        handlers = Handlers(opened[0], opened[1:])
        yield handlers
    finally:
        for handler in opened:
            with contextlib.suppress(Exception):
                handler.tidy()


@contextlib.contextmanager
def _using(
    handlers: Handlers | None, definition: TransferDefinition, factory: HandlerFactory
) -> Iterator[Handlers]:
    """The run's handlers when given (left open), else handlers of this step alone."""
    if handlers is not None:
        yield handlers
        return
    with open_handlers(definition, factory) as opened:
        yield opened


def _as_definition(definition: TransferDefinition | str | Path) -> TransferDefinition:
    if isinstance(definition, TransferDefinition):
        return definition
    return load_definition(definition)


# -- plan ---------------------------------------------------------------------------------


def _planned(entries: list[Entry], destinations: Sequence[DestinationSpec]) -> list[PlannedFile]:
    """Each entry with its final name in every destination, refusing collisions.

    Without renames the names cannot collide (a directory lists each once) and every
    file shares one small tuple shape; the entries' names are reused, not copied."""
    renames = [(i, d.rename) for i, d in enumerate(destinations) if d.rename is not None]
    count = len(destinations)
    if not renames:
        unrenamed = PlannedFile.unrenamed
        return [unrenamed(e, count) for e in entries]
    seen: list[dict[str, str]] = [{} for _ in destinations]
    planned = []
    for entry in entries:
        row = [entry.name] * count
        for index, rename in renames:
            final = names.renamed(
                entry.name, rename.pattern, rename.sub, f"destination[{index}].rename"
            )
            earlier = seen[index].setdefault(final, entry.name)
            if earlier != entry.name:
                raise NameCollision(
                    f"destination[{index}]: {earlier!r} and {entry.name!r} would both "
                    f"be delivered as {final!r}"
                )
            row[index] = final
        planned.append(PlannedFile(entry, tuple(row)))
    return planned


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
                if planned.target(index) == planned.entry.name:
                    raise NameCollision(
                        f"destination[{index}] is the source directory: {planned.entry.name!r}"
                        " would overwrite itself"
                    )


def _filtered(
    chunks: Iterable[Sequence[Entry]],
    file_filter: FileFilter | None,
    batch_filter: BatchFilter | None,
) -> tuple[list[Entry], list[str]]:
    """(kept, skipped names) of the listed ``chunks``, in order.  Each chunk goes to
    ``batch_filter`` as it is listed: a filter that takes the chunks as a stream
    (``chunks``) answers them in a pipeline while the next are listed."""
    if file_filter is None and batch_filter is None:
        return [entry for chunk in chunks for entry in chunk], []
    kept: list[Entry] = []
    skipped: list[str] = []
    given: deque[Sequence[Entry]] = deque()

    def taken() -> Iterator[Sequence[Entry]]:
        for chunk in chunks:
            if chunk:
                given.append(chunk)
                yield chunk

    answers: Iterator[Sequence[bool]]
    if batch_filter is None:
        answers = ([True] * len(chunk) for chunk in taken())
    elif callable(chunked := getattr(batch_filter, "chunks", None)):
        # A filter that takes the chunks as a stream answers them in a pipeline (the
        # callbacks of a transfer: each its own worker, see tasks/transfer/callbacks.py).
        answers = chunked(taken())
    else:
        answers = map(batch_filter, taken())
    try:
        for answer in answers:
            verdicts = list(answer)
            chunk = given.popleft()
            if len(verdicts) != len(chunk):
                raise ValueError(
                    f"batch filter answered {len(verdicts)} verdicts for {len(chunk)} files"
                )
            for entry, verdict in zip(chunk, verdicts, strict=True):
                if verdict and (file_filter is None or file_filter(entry)):
                    kept.append(entry)
                else:
                    skipped.append(entry.name)
    finally:
        close = getattr(answers, "close", None)
        if close is not None:
            close()
    return kept, skipped


@older_objects_frozen()
def plan_transfer(
    definition: TransferDefinition | str | Path,
    *,
    file_filter: FileFilter | None = None,
    batch_filter: BatchFilter | None = None,
    open_handler: HandlerFactory = open_handler,
    poll_interval: float = 1.0,
    handlers: Handlers | None = None,
) -> TransferPlan:
    """Decide what to copy where, and refuse anything unsafe before touching data.

    ``file_filter`` (the FILTER stage) sees each file that passed the conditionals and
    returns False to skip it; ``batch_filter`` does the same for up to
    ``FILTER_BATCH`` files per call (one sandbox round trip for many files).
    ``handlers``: the run's open handlers (see :func:`open_handlers`), else the step
    opens its own.
    """
    definition = _as_definition(definition)
    source = definition.source
    with _using(handlers, definition, open_handler) as opened:
        src, dst = opened.source, opened.destinations
        watched: list[Entry] = []
        if source.file_watch is not None:
            watched = selection.watch(src, source, source.file_watch, poll_interval=poll_interval)
            # An empty watch is a timeout with error: false (OTF: nothing more is done).
            if source.file_watch.watch_only or not watched:
                return TransferPlan(definition, (), tuple(watched))
        with collector_paused():
            return _plan_listed(definition, src, dst, watched, file_filter, batch_filter)


def _plan_listed(
    definition: TransferDefinition,
    src: TransferHandler,
    dst: Sequence[TransferHandler],
    watched: list[Entry],
    file_filter: FileFilter | None,
    batch_filter: BatchFilter | None,
) -> TransferPlan:
    """plan_transfer once the watch is over: list, select, filter, name, check."""
    source, destinations = definition.source, definition.destination
    cond, now = source.conditionals, time.time()
    chunks: Iterable[Sequence[Entry]] = (
        selection.apply_size_and_age(chunk, cond, now)
        for chunk in src.list_entry_chunks(source.directory, source.file_regex, FILTER_BATCH)
    )
    if cond is not None and cond.count is not None:
        # The count is of every file found: known once the whole listing is.
        entries = [e for chunk in chunks for e in chunk]
        if source.error:
            selection.check_count(entries, cond)
        elif selection.count_problem(entries, cond):
            entries = []  # OTF: a broken count means no valid files, not an error here
        chunks = [entries[i : i + FILTER_BATCH] for i in range(0, len(entries), FILTER_BATCH)]
    entries, skipped = _filtered(chunks, file_filter, batch_filter)
    if not entries and not skipped and source.error:
        raise NoFilesFound(
            f"no file in {source.directory!r} matches {source.file_regex!r}"
            + (" within the conditionals" if source.conditionals else "")
        )
    files = _planned(entries, destinations)
    _check_destinations(files, source, destinations, dst)
    post_copy = src.post_copy_targets(e.name for e in entries)
    return TransferPlan(
        definition, tuple(files), tuple(watched), tuple(skipped), tuple(post_copy.items())
    )


# -- deliver ------------------------------------------------------------------------------


class _Meter:
    """Counters a batch (or a big file's chunk) adds to at a time, calling the progress
    hook at most every ``interval`` s.  Never touched per small file."""

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


class _Copier:
    """Copies batches of a plan to every destination under temporary names."""

    def __init__(
        self,
        plan: TransferPlan,
        handlers: Handlers,
        meter: _Meter,
        after: AfterResults | None,
        after_stream: AfterStream | None = None,
    ) -> None:
        definition = plan.definition
        self.destinations = definition.destination
        self.modes = [d.mode_bits for d in self.destinations]
        self.src = handlers.source
        self.dst = handlers.destinations
        self.meter = meter
        self.after = after
        # AFTER_RESULT_RECEIVED on a thread of its own (see _AfterThread).
        self.after_thread = (
            _AfterThread(self._after, after_stream, self._results) if after is not None else None
        )
        # Final paths as prefix + name where every handler joins as posixpath does (a
        # target is a plain name: checked when planned), saving a join per file.
        self.prefixes: list[str] | None = None
        if all(type(h).join is TransferHandler.join for h in self.dst):
            self.prefixes = [_dir_prefix(d.directory) for d in self.destinations]
        # Local to local: small files go through the native loop a batch at a time.
        self.local_dst = [h for h in self.dst if isinstance(h, LocalTransfer)]
        self.native = isinstance(self.src, LocalTransfer) and len(self.local_dst) == len(self.dst)

    def run(self, batch: Sequence[PlannedFile]) -> None:
        if self.native:
            self._native(batch)
        else:
            for planned in batch:
                self._one(planned)
        self.meter.add(files=len(batch))
        if self.after_thread is not None:
            self.after_thread.put(batch)

    def _after(self, batch: Sequence[PlannedFile]) -> None:
        """AFTER_RESULT_RECEIVED for a batch every destination holds (temporary names)."""
        assert self.after is not None
        self.after(self._results(batch))

    def _results(self, batch: Sequence[PlannedFile]) -> list[FileResult]:
        """The delivered files of a batch, with their final paths."""
        if self.prefixes is not None and len(self.prefixes) == 1:
            prefix = self.prefixes[0]
            results = [FileResult(p.entry, (prefix + p.target(0),)) for p in batch]
        elif self.prefixes is not None:
            prefixes = self.prefixes
            results = [
                FileResult(p.entry, tuple(map(str.__add__, prefixes, p.targets))) for p in batch
            ]
        else:
            results = [
                FileResult(
                    p.entry,
                    tuple(
                        h.join(d.directory, t)
                        for h, d, t in zip(self.dst, self.destinations, p.targets, strict=True)
                    ),
                )
                for p in batch
            ]
        return results

    def _one(self, planned: PlannedFile) -> None:
        """A file through the handlers: big ones report their bytes as they go."""
        entry = planned.entry
        large = entry.size >= CHUNK
        on_bytes = self._count_bytes if large else None
        for index, handler in enumerate(self.dst):
            handler.receive(
                self.src,
                entry,
                handler.temp_path(planned.target(index)),
                self.modes[index],
                on_bytes,
            )
        if not large:
            self.meter.add(nbytes=entry.size * len(self.dst))

    def _count_bytes(self, n: int) -> None:
        self.meter.add(nbytes=n)

    def _native(self, batch: Sequence[PlannedFile]) -> None:
        small = [p for p in batch if p.entry.size < CHUNK]
        if small:
            self._native_small(small)
        for planned in batch:
            if planned.entry.size >= CHUNK:
                self._one(planned)

    def _native_small(self, small: list[PlannedFile]) -> None:
        # Names relative to the source and destination directories (one descriptor each
        # per batch): the kernel does not walk the directories' paths again per file.
        # A source listed elsewhere (a link resolved inside the tree) keeps its path.
        fsencode = os.fsencode
        source_dir = self.src.spec.directory
        prefix = _dir_prefix(source_dir)
        sources = [
            p.entry.name if p.entry.path == prefix + p.entry.name else p.entry.path for p in small
        ]
        atimes = [p.entry.atime_ns or p.entry.mtime_ns for p in small]
        mtimes = [p.entry.mtime_ns for p in small]
        sizes = [p.entry.size for p in small]
        for index, handler in enumerate(self.local_dst):
            mode = self.modes[index]
            job = native.Batch(
                sources,
                names.temp_names([p.target(index) for p in small]),
                atimes,
                mtimes,
                [-1 if mode is None else mode] * len(small),
                source_dir=fsencode(source_dir or "."),
                target_dir=fsencode(handler.spec.directory or "."),
                sizes=sizes,
            )
            try:
                native.copy_all(job)
            except native.CopyFailed as failed:
                planned = small[failed.index]
                path = (
                    planned.entry.path
                    if failed.step == 1
                    else handler.temp_path(planned.target(index))
                )
                raise ProtocolError(
                    handler.protocol, failed.operation, path, failed.reason
                ) from None
        self.meter.add(nbytes=sum(p.entry.size for p in small) * len(self.dst))


class _AfterThread:
    """AFTER_RESULT_RECEIVED on a thread of its own, a batch at a time, in the order the
    copies finished: a copy thread hands its batch over and copies the next while the
    callbacks' workers (other processes, other cores) answer for the last, instead of
    waiting for them.  One thread calls every batch: callbacks keep state (a sandbox
    worker, the metadata gathered).  A failure stops the copies at their next batch
    and is raised by :meth:`finish`.

    With ``stream`` (a hook's ``chunks``: delivered batches in, one item out as each is
    done), the batches go to it as one stream instead, so the hook builds and sends the
    next batch while its workers answer this one; ``convert`` makes a batch's results."""

    def __init__(
        self,
        call: Callable[[Sequence[PlannedFile]], None],
        stream: AfterStream | None = None,
        convert: Callable[[Sequence[PlannedFile]], Sequence[FileResult]] | None = None,
    ) -> None:
        self.call = call
        self.stream = stream
        self.convert = convert
        self.work: queue.SimpleQueue[Sequence[PlannedFile] | None] = queue.SimpleQueue()
        self.failed = threading.Event()
        self.error: BaseException | None = None
        self.ended = False  # the end of the batches (None) was taken
        self.thread = threading.Thread(target=self._run, name="sf-copy-after", daemon=True)
        self.thread.start()

    def put(self, batch: Sequence[PlannedFile]) -> None:
        self.work.put(batch)

    def _run(self) -> None:
        if self.stream is not None:
            self._run_stream(self.stream)
            return
        while (batch := self.work.get()) is not None:
            if self.error is not None:
                continue  # failed: what is left is dropped
            try:
                self.call(batch)
            except BaseException as exc:  # raised again by finish(), in deliver's thread
                self.error = exc
                self.failed.set()

    def _batches(self) -> Iterator[Sequence[FileResult]]:
        """The batches handed over, in order; those already waiting when one is taken
        go with it (up to AFTER_JOIN files): a round trip per batch while the callbacks
        keep up with the copies, fewer and larger ones when they fall behind."""
        assert self.convert is not None
        while (batch := self.work.get()) is not None:
            joined: list[PlannedFile] | None = None
            while len(batch if joined is None else joined) < AFTER_JOIN:
                try:
                    more = self.work.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self.work.put(None)  # the end: taken again by the loop above
                    break
                if joined is None:
                    joined = list(batch)
                joined.extend(more)
            yield self.convert(batch if joined is None else joined)
        self.ended = True

    def _run_stream(self, stream: AfterStream) -> None:
        try:
            for _ in stream(self._batches()):
                pass
        except BaseException as exc:  # raised again by finish(), in deliver's thread
            self.error = exc
            self.failed.set()
            # What is left is dropped, up to the end stop() marks.
            while not self.ended and self.work.get() is not None:
                pass

    def stop(self) -> None:
        """Let the batches handed over end, and the thread with them (repeatable).  The
        wait is as long as the callbacks' own timeouts allow the last batch."""
        if self.thread.is_alive():
            self.work.put(None)
            self.thread.join()

    def finish(self) -> None:
        """Wait for every batch handed over; raise the first callback failure."""
        self.stop()
        if self.error is not None:
            raise self.error


def _dir_prefix(directory: str) -> str:
    """What posixpath.join(directory, name) puts before a plain name."""
    return directory if not directory or directory.endswith("/") else directory + "/"


def _batches(files: Sequence[PlannedFile], size: int) -> Iterator[Sequence[PlannedFile]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def _per_file(after_result: AfterResult) -> AfterResults:
    def each(results: Sequence[FileResult]) -> None:
        for result in results:
            after_result(result)

    return each


def _run_batches(
    copier: _Copier,
    batches: list[Sequence[PlannedFile]],
    workers: int,
    failed: threading.Event | None = None,
) -> None:
    """Every batch, by ``workers`` threads taking the next batch from a queue; the first
    failure stops the others at their next batch and is raised.  ``failed``, set from
    elsewhere (AFTER_RESULT_RECEIVED's thread), stops them too."""
    failed = failed if failed is not None else threading.Event()
    if workers <= 1:
        for batch in batches:
            if failed.is_set():
                return
            copier.run(batch)
        return
    work: queue.SimpleQueue[Sequence[PlannedFile]] = queue.SimpleQueue()
    for batch in batches:
        work.put(batch)

    def worker() -> None:
        while not failed.is_set():
            try:
                batch = work.get_nowait()
            except queue.Empty:
                return
            try:
                copier.run(batch)
            except BaseException:
                failed.set()
                raise

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sf-copy") as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error


@older_objects_frozen()
def deliver(
    plan: TransferPlan,
    *,
    progress: ProgressHook | None = None,
    after_result: AfterResult | None = None,
    after_results: AfterResults | None = None,
    max_workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress_interval: float = 0.25,
    open_handler: HandlerFactory = open_handler,
    handlers: Handlers | None = None,
) -> Delivery:
    """Copy every planned file to every destination under its temporary name.

    Work is split into batches of ``batch_size`` files run by up to ``max_workers``
    threads (1: in the calling thread; None: :func:`default_workers`).  ``progress``
    receives counters (throttled to one call per ``progress_interval`` seconds, plus a
    final one); ``after_results`` is called once per batch with the files every
    destination now holds (``after_result``: the same, one call per file).  Nothing
    appears under a final name here.  On failure the temporary files of this plan are
    removed and the error is raised.
    ``handlers``: the run's open handlers (see :func:`open_handlers`).
    """
    started = time.monotonic()
    definition = plan.definition
    destinations = definition.destination
    meter = _Meter(plan, progress, progress_interval)
    if not plan.files or not destinations:
        meter.done()
        return Delivery(0, 0, 0.0)
    hooks: list[AfterResults] = []
    if after_results is not None:
        hooks.append(after_results)
    if after_result is not None:
        hooks.append(_per_file(after_result))

    def after(results: Sequence[FileResult]) -> None:
        for hook in hooks:
            hook(results)

    # A hook that takes its batches as a stream gets them so (see _AfterThread).
    chunked = getattr(after_results, "chunks", None) if after_result is None else None
    stream: AfterStream | None = chunked if callable(chunked) else None

    action = definition.source.post_copy_action
    with _using(handlers, definition, open_handler) as opened:
        for handler in opened.destinations:
            handler.sync_writes = action is not None and action.action == "delete"
        batches = list(_batches(plan.files, max(1, batch_size)))
        workers = max_workers if max_workers is not None else default_workers()
        # Its AFTER_RESULT_RECEIVED thread starts here: stopped below, whatever happens.
        copier = _Copier(plan, opened, meter, after if hooks else None, stream)
        pipe = copier.after_thread
        try:
            _run_batches(copier, batches, min(workers, len(batches)), pipe.failed if pipe else None)
            if pipe is not None:
                pipe.finish()
        except BaseException:
            if pipe is not None:
                pipe.stop()
            remove_temps(plan, opened.destinations)
            raise
    meter.done()
    return Delivery(len(plan.files), meter.bytes, time.monotonic() - started)


def remove_temps(plan: TransferPlan, handlers: Sequence[TransferHandler]) -> None:
    """Remove every temporary file of `plan` in each destination (best effort): what a
    failed delivery, here or in a fan-out's child runs, leaves behind."""
    for index, handler in enumerate(handlers):
        for planned in plan.files:
            temp = handler.temp_path(planned.target(index))
            with contextlib.suppress(Exception):
                if handler.exists(temp):
                    handler.delete(temp)


# -- finalize -----------------------------------------------------------------------------


@older_objects_frozen()
def finalize(
    plan: TransferPlan,
    *,
    open_handler: HandlerFactory = open_handler,
    handlers: Handlers | None = None,
) -> TransferResult:
    """Move delivered files into place everywhere, write flags, then the post-copy action.

    Safe to repeat after a failure part-way: files already in place are left alone.
    ``handlers``: the run's open handlers (see :func:`open_handlers`).
    """
    definition = plan.definition
    source = definition.source
    destinations = definition.destination
    action = source.post_copy_action
    with _using(handlers, definition, open_handler) as opened:
        src, dst = opened.source, opened.destinations
        if plan.files:
            for index, handler in enumerate(dst):
                handler.move_files_to_final_location(f.target(index) for f in plan.files)
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
    batch_filter: BatchFilter | None = None,
    after_result: AfterResult | None = None,
    after_results: AfterResults | None = None,
    progress: ProgressHook | None = None,
    max_workers: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    poll_interval: float = 1.0,
    open_handler: HandlerFactory = open_handler,
) -> TransferResult:
    """Plan, deliver and finalize one definition (a model or a .json/.yaml path), with
    each handler opened once for the three steps.  ``max_workers`` defaults to the
    cores available (local copies are CPU-bound on fast storage)."""
    started = time.monotonic()
    definition = _as_definition(definition)
    workers = max_workers if max_workers is not None else default_workers()
    delivered: list[FileResult] = []
    record = _recorder(delivered, after_results)

    with open_handlers(definition, open_handler) as handlers:
        plan = plan_transfer(
            definition,
            file_filter=file_filter,
            batch_filter=batch_filter,
            poll_interval=poll_interval,
            handlers=handlers,
        )
        deliver(
            plan,
            progress=progress,
            after_result=after_result,
            after_results=record,
            max_workers=workers,
            batch_size=batch_size,
            handlers=handlers,
        )
        result = finalize(plan, handlers=handlers)
    return dataclasses.replace(
        result, seconds=time.monotonic() - started, delivered=tuple(delivered)
    )


class _Recorder:
    """run_transfer's AFTER_RESULT_RECEIVED hook: keeps every delivered file, then
    calls the caller's hook."""

    def __init__(self, delivered: list[FileResult], hook: AfterResults | None) -> None:
        self.delivered = delivered
        self.hook = hook

    def __call__(self, results: Sequence[FileResult]) -> None:
        self.delivered.extend(results)
        if self.hook is not None:
            self.hook(results)


class _StreamRecorder(_Recorder):
    """The same for a hook that takes its batches as a stream (deliver then hands it
    them so: see _AfterThread)."""

    def __init__(
        self, delivered: list[FileResult], hook: AfterResults, stream: AfterStream
    ) -> None:
        super().__init__(delivered, hook)
        self.stream = stream

    def chunks(self, batches: Iterator[Sequence[FileResult]]) -> Iterator[object]:
        def kept() -> Iterator[Sequence[FileResult]]:
            for results in batches:
                self.delivered.extend(results)
                yield results

        return self.stream(kept())


def _recorder(delivered: list[FileResult], hook: AfterResults | None) -> _Recorder:
    stream = getattr(hook, "chunks", None)
    if hook is not None and callable(stream):
        return _StreamRecorder(delivered, hook, stream)
    return _Recorder(delivered, hook)


def default_workers() -> int:
    """Copy threads by default: the cores this process may run on (at least 2, at most 8:
    network protocols wait more than they compute)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(2, min(8, cores))
