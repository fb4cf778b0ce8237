"""The user callbacks of one transfer, bound to the engine's hooks.

The engine knows files as `Entry` and delivered files as `FileResult`; callbacks see the
seed's `NodeInfo`.  This module translates, remembers the metadata a FILTER callback set
for each file so AFTER_RESULT_RECEIVED starts from it, and stores what
AFTER_RESULT_RECEIVED leaves (see tasks/transfer_metadata.py).
"""

import contextlib
import functools
import posixpath
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prefect.logging import get_logger

from storeflow.models.transfer import TransferDefinition, protocol_kind
from storeflow.sandbox.models import FileNode, NodeInfo, NodeRow, Stage, node_row
from storeflow.sandbox.stages import CallbackSet, FileOutcome, StageColumns, StageOutcome
from storeflow.sandbox.worker import DeliveredResult
from storeflow.tasks.transfer import Entry, FileResult
from storeflow.tasks.transfer import metadata as transfer_metadata
from storeflow.tasks.transfer.names import temp_name

LOG = get_logger("storeflow.transfer")


def node_of(entry: Entry, path: str, metadata: dict[str, str]) -> NodeInfo:
    return NodeInfo(
        path=path,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        size=entry.size,
        atime_ns=entry.atime_ns,
        mtime_ns=entry.mtime_ns,
        ctime_ns=entry.ctime_ns,
        metadata=metadata,
    )


def file_node(entry: Entry, path: str, metadata: dict[str, str]) -> FileNode:
    """:func:`node_of` for the batch calls: the same fields, no model per file."""
    return FileNode(
        path,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.size,
        entry.atime_ns,
        entry.mtime_ns,
        entry.ctime_ns,
        metadata,
    )


class ChunkedFilter:
    """FILTER as the engine calls it: a chunk of files at a time (``__call__``), or a
    stream of chunks answered in a pipeline (``chunks``)."""

    __slots__ = ("bound",)

    def __init__(self, bound: "BoundCallbacks") -> None:
        self.bound = bound

    def __call__(self, entries: Sequence[Entry]) -> list[bool]:
        return self.bound.filter_batch(entries)

    def chunks(self, chunks: Iterable[Sequence[Entry]]) -> Iterator[list[bool]]:
        return self.bound.filter_chunks(chunks)


class ChunkedAfter:
    """AFTER_RESULT_RECEIVED as the engine calls it: a batch of delivered files at a
    time (``__call__``), or a stream of batches answered in a pipeline (``chunks``)."""

    __slots__ = ("bound",)

    def __init__(self, bound: "BoundCallbacks") -> None:
        self.bound = bound

    def __call__(self, results: Sequence[FileResult]) -> None:
        self.bound.after_batch(results)

    def chunks(self, batches: Iterable[Sequence[FileResult]]) -> Iterator[None]:
        return self.bound.after_chunks(batches)


@dataclass
class BoundCallbacks:
    callbacks: CallbackSet
    definition: TransferDefinition
    #: Source file name -> metadata after FILTER.
    filtered: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Final path (every destination) -> metadata after AFTER_RESULT_RECEIVED.
    stored: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Why files were skipped or metadata not stored; shown in the summary.
    problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def has(self, stage: Stage) -> bool:
        return stage in self._stages

    @functools.cached_property
    def _stages(self) -> frozenset[Stage]:
        # Asked once per file delivered: the callbacks' stages, looked up once.
        return frozenset(c.stage for c in self.callbacks.callbacks)

    @functools.cached_property
    def local_source(self) -> bool:
        return protocol_kind(self.definition.source) == "local"

    def initial_metadata(self, entry: Entry) -> dict[str, str]:
        # A local source file may carry metadata from an earlier transfer.
        return transfer_metadata.read(entry.path) if self.local_source else {}

    def initial_metadata_many(self, entries: Sequence[Entry]) -> list[dict[str, str]]:
        """:meth:`initial_metadata` of many files, in order, in one call: a local
        source's are found by the native loop with the GIL released once (see
        transfer_metadata.read_many), not once per file."""
        if not self.local_source:
            return [{} for _ in entries]
        return transfer_metadata.read_many([e.path for e in entries])

    # -- FILTER ------------------------------------------------------------------------

    def file_filter(self, entry: Entry) -> bool:
        node = node_of(entry, entry.path, self.initial_metadata(entry))
        return self._filtered(entry, self.callbacks.filter(node))

    @functools.cached_property
    def batch_filter(self) -> "ChunkedFilter":
        """The engine's FILTER hook (plan_transfer's ``batch_filter``): called with a
        chunk of files it is :meth:`filter_batch`; its ``chunks`` is
        :meth:`filter_chunks`, which the engine uses to pipeline the chunks."""
        return ChunkedFilter(self)

    def filter_batch(self, entries: Sequence[Entry]) -> list[bool]:
        """FILTER for many files: each callback's worker gets them all in one batch; the
        verdicts come back as columns (no object per file)."""
        columns = self.callbacks.run_stage_rows(Stage.FILTER, self._filter_rows(entries))
        return self._verdicts(entries, columns)

    def filter_chunks(self, chunks: Iterable[Sequence[Entry]]) -> Iterator[list[bool]]:
        """:meth:`filter_batch` for a stream of chunks, the verdicts of each in order:
        the FILTER callbacks answer as a pipeline (see CallbackSet.run_stage_chunks), so
        a Python and a JavaScript callback work at once on successive chunks while this
        thread lists and builds the next."""
        given: deque[Sequence[Entry]] = deque()
        with self._metadata_ahead(chunks) as read:

            def rows() -> Iterator[tuple[list[NodeRow], None]]:
                for entries, metadata in read:
                    given.append(entries)
                    rows = [node_row(e, m) for e, m in zip(entries, metadata, strict=True)]
                    yield rows, None

            for columns in self.callbacks.run_stage_chunks(Stage.FILTER, rows()):
                yield self._verdicts(given.popleft(), columns)

    @contextlib.contextmanager
    def _metadata_ahead(
        self, chunks: Iterable[Sequence[Entry]]
    ) -> Iterator[Iterator[tuple[Sequence[Entry], list[dict[str, str]]]]]:
        """Each chunk with its files' metadata.  A local source's is probed a chunk
        ahead by the native loop on a thread of its own (transfer_metadata.ManyRead: a
        system call a file, without the GIL) while this thread lists the next chunk.  A
        Python thread did that before: waiting for the GIL to hand its answer over, it
        held up this one.  Read file by file on a second thread, the two threads handed
        the GIL to each other around every call, which cost more than it saved."""
        if not self.local_source:
            yield ((entries, [{} for _ in entries]) for entries in chunks)
            return
        waiting: deque[tuple[Sequence[Entry], transfer_metadata.ManyRead]] = deque()

        def ahead() -> Iterator[tuple[Sequence[Entry], list[dict[str, str]]]]:
            for entries in chunks:
                waiting.append((entries, transfer_metadata.ManyRead([e.path for e in entries])))
                if len(waiting) > 1:
                    done, reading = waiting.popleft()
                    yield done, reading.result()
            while waiting:
                done, reading = waiting.popleft()
                yield done, reading.result()

        try:
            yield ahead()
        finally:
            for _, reading in waiting:
                reading.wait()

    def _filter_rows(self, entries: Sequence[Entry]) -> list[NodeRow]:
        metadata = self.initial_metadata_many(entries)
        return [node_row(e, m) for e, m in zip(entries, metadata, strict=True)]

    def _verdicts(self, entries: Sequence[Entry], columns: StageColumns) -> list[bool]:
        for i, (name, error) in sorted(columns.failures.items()):
            self._problem(f"{entries[i].name}: skipped, FILTER callback {name} failed: {error}")
        filtered = self.filtered
        for entry, keep, metadata in zip(entries, columns.proceed, columns.metadata, strict=True):
            if keep:
                # The row's metadata (read for this file alone) or the callbacks': its own.
                filtered[entry.name] = metadata
        return columns.proceed

    def _problem(self, text: str) -> None:
        with self._lock:
            self.problems.append(text)
        LOG.warning("%s", text)

    def _filtered(self, entry: Entry, outcome: StageOutcome | FileOutcome) -> bool:
        if outcome.failed:
            self._problem(
                f"{entry.name}: skipped, FILTER callback {outcome.failed_callback} failed: "
                f"{outcome.error}"
            )
        if outcome.keep:
            # The outcome's metadata is its own (a copy of what was sent, or the
            # callbacks'): kept as it is.
            self.filtered[entry.name] = outcome.metadata or {}
        return outcome.keep

    # -- AFTER_RESULT_RECEIVED ---------------------------------------------------------

    def after_result(self, result: FileResult) -> None:
        self.after_batch([result])

    @functools.cached_property
    def after_results(self) -> "ChunkedAfter":
        """The engine's AFTER_RESULT_RECEIVED hook (deliver's ``after_results``): called
        with a batch it is :meth:`after_batch`; its ``chunks`` is :meth:`after_chunks`,
        which the engine uses to pipeline the batches."""
        return ChunkedAfter(self)

    def after_batch(self, results: Sequence[FileResult]) -> None:
        """AFTER_RESULT_RECEIVED for a batch of delivered files (one batch per sandbox
        round trip), then the metadata stored on each file's temporary copy."""
        starting = self._metadata_before([r.entry for r in results])
        if not self.has(Stage.AFTER_RESULT_RECEIVED):
            self._store_unasked(results, starting)
            return
        rows, wires = self._after_rows(results, starting)
        columns = self.callbacks.run_stage_rows(Stage.AFTER_RESULT_RECEIVED, rows, wires)
        self._after_answers(results, starting, columns)

    def after_chunks(self, batches: Iterable[Sequence[FileResult]]) -> Iterator[None]:
        """:meth:`after_batch` for a stream of batches, one ``None`` as each is done (its
        metadata stored), in order: the next batch is built and sent while the worker
        answers this one (see CallbackSet.run_stage_chunks)."""
        if not self.has(Stage.AFTER_RESULT_RECEIVED):
            for results in batches:
                self._store_unasked(results, self._metadata_before([r.entry for r in results]))
                yield None
            return
        given: deque[tuple[Sequence[FileResult], list[dict[str, str]]]] = deque()

        def chunks() -> Iterator[tuple[list[NodeRow], list[DeliveredResult]]]:
            for results in batches:
                starting = self._metadata_before([r.entry for r in results])
                given.append((results, starting))
                yield self._after_rows(results, starting)

        stage = Stage.AFTER_RESULT_RECEIVED
        for columns in self.callbacks.run_stage_chunks(stage, chunks()):
            results, starting = given.popleft()
            self._after_answers(results, starting, columns)
            yield None

    def _store_unasked(self, results: Sequence[FileResult], starting: list[dict[str, str]]) -> None:
        for result, metadata in zip(results, starting, strict=True):
            if metadata:
                self._store(result, metadata, [])

    @staticmethod
    def _after_rows(
        results: Sequence[FileResult], starting: list[dict[str, str]]
    ) -> tuple[list[NodeRow], list[DeliveredResult]]:
        rows = [
            node_row(r.entry, metadata, r.destinations[0])
            for r, metadata in zip(results, starting, strict=True)
        ]
        # Each file's result in its short form, (source, destination, ...): the worker
        # expands it to ExecutionResult(status="SUCCESS", destination=<the first>,
        # details={"destinations": [...], "source": ...}) when a callback reads it.
        return rows, [(r.entry.path, *r.destinations) for r in results]

    def _after_answers(
        self,
        results: Sequence[FileResult],
        starting: list[dict[str, str]],
        columns: StageColumns,
    ) -> None:
        for i, (name, error) in sorted(columns.failures.items()):
            self._problem(
                f"{results[i].entry.name}: AFTER_RESULT_RECEIVED callback {name} failed: {error}"
            )
        for result, before, after in zip(results, starting, columns.metadata, strict=True):
            if after is before:  # no callback changed it: stored only when there is some
                if after:
                    self._store(result, dict(after), [])
                continue
            removed = sorted(k for k in before if k not in after)
            if after or removed:
                self._store(result, dict(after), removed)

    def _metadata_before(self, entries: Sequence[Entry]) -> list[dict[str, str]]:
        """Each file's metadata as FILTER left it, else as the source file carries it
        (read for the batch's files FILTER did not see, all at once)."""
        get = self.filtered.get
        found = [get(e.name) for e in entries]
        if None not in found:  # FILTER saw every one (the usual case, one pass in C)
            return cast(list[dict[str, str]], found)
        unseen = [entry for entry, metadata in zip(entries, found, strict=True) if metadata is None]
        read: list[dict[str, str]]
        if self.has(Stage.AFTER_RESULT_RECEIVED):
            read = self.initial_metadata_many(unseen)
        else:
            read = [{} for _ in unseen]
        more = iter(read)
        return [next(more) if metadata is None else metadata for metadata in found]

    def _store(self, result: FileResult, metadata: dict[str, str], removed: list[str]) -> None:
        for dest, final in zip(self.definition.destination, result.destinations, strict=True):
            with self._lock:
                self.stored[final] = metadata
            if protocol_kind(dest) != "local":
                continue  # recorded with the execution only
            directory, name = posixpath.split(final)
            # Still under its temporary name: the metadata arrives with the file.
            temp = posixpath.join(directory, temp_name(name))
            try:
                transfer_metadata.write(temp, metadata, removed)
            except transfer_metadata.MetadataNotStored as exc:
                with self._lock:
                    self.problems.append(str(exc))
                LOG.warning("%s", exc)

    def summary(self) -> dict[str, Any]:
        return {"metadata_files": len(self.stored), "callback_problems": len(self.problems)}
