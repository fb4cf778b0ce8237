"""Running the callbacks of one stage for one task: the API the transfer
engine calls (it wraps these calls in Prefect tasks; this module does not
import Prefect).

    with CallbackSet(definitions, task_id="t-42", policy=policy) as callbacks:
        if callbacks.before_task(last_execution).vetoed: ...
        for path in files:
            outcome = callbacks.filter(NodeInfo.from_path(path, metadata))
            if not outcome.keep: continue          # skipped, or a callback failed
            ...move the file..., then
            callbacks.after_result(node, ExecutionResult(status="SUCCESS", ...))
        callbacks.after_task(ExecutionResult(status="SUCCESS"))

Each callback gets its own warm worker for the life of the CallbackSet (one
task), so 10,000 files through a FILTER callback start one process;
`filter_many` and `after_results` hand a worker many files per line
(the callback still sees one `run(req)` call per file).
"""

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress
from types import TracebackType
from typing import Any

from pydantic import BaseModel, Field

from storeflow.sandbox import languages
from storeflow.sandbox.definitions import CallbackDefinition, CallbackError, discover, load_source
from storeflow.sandbox.models import (
    Answer,
    CallbackFailure,
    CallbackRequest,
    CallOutcome,
    ErrorKind,
    ExecutionResult,
    FileNode,
    NodeInfo,
    NodeRow,
    Stage,
    TaskExecution,
    TaskInfo,
)
from storeflow.sandbox.settings import SandboxSettings, as_settings
from storeflow.sandbox.worker import (
    BATCH_ENCODERS,
    BatchItem,
    CallbackWorker,
    DeliveredResult,
)

# Shared empties of FileOutcome (see there): replaced, never filled.
_NONE: list[str] = []
_NO_KEYS: dict[str, str] = {}

#: A result as a stage is given it: the model, its wire dict, or a delivered file's
#: short form (see sandbox/worker.py).
ResultLike = ExecutionResult | dict[str, Any] | DeliveredResult

#: Chunks :meth:`CallbackSet.run_stage_chunks` keeps in flight by default.
PIPELINE_AHEAD = 4

# Stages where a falsy return means "no": skip the file, veto the task.
_GATING_STAGES = {Stage.FILTER, Stage.BEFORE_TASK_EXECUTED}


def _batch_encoding(language: str) -> str | None:
    """How the language's workers read a batch's items, None when they take no batches
    (an unknown language: none, its calls fail as a bad callback)."""
    if language not in languages.names():
        return None
    known = languages.get(language)
    return known.batch_encoding if known.batches else None


class MetadataChanges(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)
    removed: list[str] = Field(default_factory=list)

    @classmethod
    def between(cls, before: dict[str, str], after: dict[str, str]) -> "MetadataChanges":
        return cls(
            set={k: v for k, v in after.items() if before.get(k) != v},
            removed=sorted(k for k in before if k not in after),
        )

    def __bool__(self) -> bool:
        return bool(self.set or self.removed)


class CallbackCall(BaseModel):
    name: str
    language: str
    outcome: CallOutcome


class StageOutcome(BaseModel):
    stage: Stage
    proceed: bool = Field(description="Keep the file / run the task / every callback succeeded.")
    metadata: dict[str, str] | None = None
    changes: MetadataChanges = Field(default_factory=MetadataChanges)
    calls: list[CallbackCall] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="Callbacks of disabled languages.")
    error: CallbackFailure | None = None
    failed_callback: str | None = None

    @property
    def keep(self) -> bool:
        """FILTER: move this file."""
        return self.proceed

    @property
    def vetoed(self) -> bool:
        """BEFORE_TASK_EXECUTED: a callback said no (or failed)."""
        return not self.proceed

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(slots=True)
class BatchCall:
    """One callback's answer about one file of a batch."""

    name: str
    language: str
    outcome: Answer


class FileOutcome:
    """:meth:`CallbackSet.run_stage_many`'s result for one file: what
    :class:`StageOutcome` says, without a model per file (``outcome()`` gives one).
    Built thousands of times a batch: its empty lists and dict are shared until a
    stage gives it its own (``skipped``, ``set`` and ``removed`` are replaced, never
    changed in place)."""

    __slots__ = (
        "calls",
        "error",
        "failed_callback",
        "metadata",
        "proceed",
        "removed",
        "set",
        "skipped",
        "stage",
    )

    def __init__(self, stage: Stage, metadata: dict[str, str]) -> None:
        self.stage = stage
        self.metadata = metadata
        self.proceed = True
        self.calls: list[BatchCall] = []
        self.skipped: list[str] = _NONE
        self.error: CallbackFailure | None = None
        self.failed_callback: str | None = None
        #: Keys the callbacks set or changed, and removed.
        self.set: dict[str, str] = _NO_KEYS
        self.removed: list[str] = _NONE

    @property
    def keep(self) -> bool:
        return self.proceed

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def changes(self) -> MetadataChanges:
        return MetadataChanges(set=self.set, removed=self.removed)

    def outcome(self) -> StageOutcome:
        return StageOutcome(
            stage=self.stage,
            proceed=self.proceed,
            metadata=self.metadata,
            changes=self.changes,
            calls=[
                CallbackCall(name=c.name, language=c.language, outcome=c.outcome.outcome())
                for c in self.calls
            ],
            skipped=self.skipped,
            error=self.error,
            failed_callback=self.failed_callback,
        )


@dataclass(slots=True)
class StageColumns:
    """:meth:`CallbackSet.run_stage_rows`' result: a list per field, one entry per
    file in the order given, and the rare cases (failures) by file index."""

    stage: Stage
    #: Keep the file / every callback succeeded.
    proceed: list[bool]
    #: The metadata after the stage: the very dict the row carried where no callback
    #: changed it, else the last callback's.
    metadata: list[dict[str, str]]
    #: File index -> (callback name, failure), for the files a callback failed on.
    failures: dict[int, tuple[str, CallbackFailure | None]] = field(default_factory=dict)
    #: Each callback asked, in order: its definition, the indices of the files it was
    #: asked about, and its answer for each.
    asked: list[tuple[CallbackDefinition, list[int], list[Answer]]] = field(default_factory=list)
    #: Callbacks of disabled languages, with the indices of the files they missed.
    skipped: list[tuple[str, list[int]]] = field(default_factory=list)


class CallbackSet:
    """The callbacks of one task, with a warm worker per callback."""

    def __init__(
        self,
        callbacks: Sequence[CallbackDefinition],
        *,
        task_id: str,
        policy: Any = None,
    ) -> None:
        self.settings: SandboxSettings = as_settings(policy)
        self.task_id = task_id
        self.callbacks = list(callbacks)
        self._workers: dict[int, CallbackWorker] = {}
        # Refuse up front, before any file is touched, when a jail is incomplete.
        for name in dict.fromkeys(c.language for c in self.callbacks):
            if self.settings.enabled(name):
                languages.get(name).require_isolation(self.settings.for_language(name))

    @classmethod
    def from_hook_directories(
        cls, *, task_id: str, policy: Any = None, extra: Sequence[CallbackDefinition] = ()
    ) -> "CallbackSet":
        settings = as_settings(policy)
        return cls([*discover(settings), *extra], task_id=task_id, policy=settings)

    def enabled(self, language: str) -> bool:
        return self.settings.enabled(language)

    def _worker(self, index: int) -> CallbackWorker:
        worker = self._workers.get(index)
        if worker is None:
            definition = self.callbacks[index]
            source, filename = load_source(definition, self.settings)
            worker = CallbackWorker(definition.language, source, filename, self.settings)
            self._workers[index] = worker
        return worker

    def run_stage(
        self,
        stage: Stage,
        *,
        node: NodeInfo | None = None,
        result: ExecutionResult | None = None,
        last_execution: TaskExecution | None = None,
    ) -> StageOutcome:
        """Run this stage's callbacks in order; stop at the first no or failure."""
        task = TaskInfo(id=self.task_id, last_execution=last_execution)
        before = dict(node.metadata) if node is not None else None
        outcome = StageOutcome(stage=stage, proceed=True, metadata=before)
        for index, definition in enumerate(self.callbacks):
            if definition.stage is not stage:
                continue
            if not self.enabled(definition.language):
                outcome.skipped.append(definition.name)
                continue
            request = CallbackRequest(stage=stage, task=task, node=node, result=result)
            call = self._call(index, request)
            outcome.calls.append(
                CallbackCall(name=definition.name, language=definition.language, outcome=call)
            )
            if not call.ok:
                outcome.proceed = False
                outcome.error = call.error
                outcome.failed_callback = definition.name
                break
            if node is not None and call.metadata is not None:
                node = node.model_copy(update={"metadata": call.metadata})
            if stage in _GATING_STAGES and not call.truthy:
                outcome.proceed = False
                break
        if node is not None and before is not None:
            outcome.metadata = dict(node.metadata)
            outcome.changes = MetadataChanges.between(before, outcome.metadata)
        return outcome

    def run_stage_many(
        self,
        stage: Stage,
        nodes: Sequence[NodeInfo | FileNode],
        results: Sequence[ResultLike] | None = None,
    ) -> list[FileOutcome]:
        """:meth:`run_stage` for many files (FILTER, AFTER_RESULT_RECEIVED): the same
        verdicts, in order, with each callback asked about all the files still in play
        in one batch (one line to its worker instead of a round trip per file).  A result
        may come as its wire form (:meth:`ExecutionResult.to_wire`), or as a delivered
        file's short form (:data:`DeliveredResult`).  :meth:`run_stage_rows` says the
        same in columns."""
        rows = [n.to_row() for n in nodes]
        sent = [row[-1] for row in rows]
        columns = self.run_stage_rows(stage, rows, results)
        outcomes = [FileOutcome(stage, n.metadata) for n in nodes]
        for definition, live, answers in columns.asked:
            previous: BatchCall | None = None
            for i, answer in zip(live, answers, strict=True):
                # A repeated answer (the same object) shares its call record too.
                if previous is None or previous.outcome is not answer:
                    previous = BatchCall(definition.name, definition.language, answer)
                outcomes[i].calls.append(previous)
        for name, live in columns.skipped:
            for i in live:
                outcomes[i].skipped = [*outcomes[i].skipped, name]
        for i, (name, error) in columns.failures.items():
            outcomes[i].error = error
            outcomes[i].failed_callback = name
        for i, (outcome, node) in enumerate(zip(outcomes, nodes, strict=True)):
            outcome.proceed = columns.proceed[i]
            before, after = node.metadata, columns.metadata[i]
            if after is sent[i]:
                outcome.metadata = dict(after)  # the caller's own dict stays theirs
            else:
                outcome.metadata = after
                if after or before:
                    outcome.set = {k: v for k, v in after.items() if before.get(k) != v}
                    outcome.removed = sorted(k for k in before if k not in after)
        return outcomes

    def run_stage_rows(
        self,
        stage: Stage,
        rows: Sequence[NodeRow],
        results: Sequence[ResultLike] | None = None,
    ) -> StageColumns:
        """:meth:`run_stage_many` for nodes given as rows (:func:`node_row`, metadata
        last), answered in columns: no object per file on either side, for a caller
        (the transfer engine) that reads a verdict and the metadata per file."""
        chunk = _Chunk(self, stage, rows, results)
        for index, definition in self._stage_callbacks(stage):
            if not chunk.ask(index, definition):
                break
        return chunk.columns

    def run_stage_chunks(
        self,
        stage: Stage,
        chunks: Iterable[tuple[Sequence[NodeRow], Sequence[Any] | None]],
        ahead: int = PIPELINE_AHEAD,
    ) -> Iterator[StageColumns]:
        """:meth:`run_stage_rows` for a stream of chunks (rows, results or None), each
        chunk's columns yielded in order.  The chunks go through the stage's callbacks
        as a pipeline, a thread per callback: the caller builds (and encodes) chunk k+2
        while the first callback answers chunk k+1 and the second chunk k, each worker
        on a core of its own.  Every callback still sees every file in play, in order,
        and only the files the callbacks before it kept, with their metadata.  At most
        ``ahead`` chunks are in flight.  A failure of the machinery (not of a callback:
        that is a file's answer) is raised where its chunk is yielded, and the chunks
        after it are not asked."""
        asked = self._stage_callbacks(stage)
        if not asked:
            for rows, results in chunks:
                yield _Chunk(self, stage, rows, results).columns
            return
        first = asked[0][1].language
        # The first callback is sent every file of a chunk: encoded here, by the caller,
        # while the callbacks' threads wait for their workers.
        encoding = _batch_encoding(first) if self.enabled(first) else None
        pipeline = _Pipeline(asked)
        try:
            inflight = 0
            for rows, results in chunks:
                chunk = _Chunk(self, stage, rows, results)
                if encoding is not None and chunk.rows:
                    chunk.sent[encoding] = BATCH_ENCODERS[encoding](chunk.all_items())
                pipeline.put(chunk)
                inflight += 1
                if inflight >= max(1, ahead):
                    yield pipeline.get()
                    inflight -= 1
            while inflight:
                yield pipeline.get()
                inflight -= 1
        finally:
            pipeline.close()

    def _stage_callbacks(self, stage: Stage) -> list[tuple[int, CallbackDefinition]]:
        return [(i, d) for i, d in enumerate(self.callbacks) if d.stage is stage]

    def _call_many(
        self,
        index: int,
        common: dict[str, Any],
        items: Sequence[BatchItem],
        encoded: bytes | None = None,
    ) -> list[Answer]:
        try:
            worker = self._worker(index)
        except CallbackError as exc:
            failure = CallbackFailure(kind=ErrorKind.BAD_CALLBACK, message=str(exc))
            return [Answer(ok=False, error=failure) for _ in items]
        return worker.call_items(common, items, encoded)

    def _call(self, index: int, request: CallbackRequest) -> CallOutcome:
        try:
            worker = self._worker(index)
        except CallbackError as exc:
            failure = CallbackFailure(kind=ErrorKind.BAD_CALLBACK, message=str(exc))
            return CallOutcome(ok=False, error=failure)
        return worker.call(request)

    def filter(self, node: NodeInfo) -> StageOutcome:
        return self.run_stage(Stage.FILTER, node=node)

    def filter_many(self, nodes: Sequence[NodeInfo | FileNode]) -> list[FileOutcome]:
        """FILTER for a batch of files: one outcome per node, in order."""
        return self.run_stage_many(Stage.FILTER, nodes)

    def before_task(self, last_execution: TaskExecution | None = None) -> StageOutcome:
        return self.run_stage(Stage.BEFORE_TASK_EXECUTED, last_execution=last_execution)

    def after_result(self, node: NodeInfo, result: ExecutionResult) -> StageOutcome:
        return self.run_stage(Stage.AFTER_RESULT_RECEIVED, node=node, result=result)

    def after_results(
        self,
        nodes: Sequence[NodeInfo | FileNode],
        results: Sequence[ResultLike],
    ) -> list[FileOutcome]:
        """AFTER_RESULT_RECEIVED for a batch of delivered files, one outcome each."""
        return self.run_stage_many(Stage.AFTER_RESULT_RECEIVED, nodes, results)

    def after_task(self, result: ExecutionResult) -> StageOutcome:
        return self.run_stage(Stage.AFTER_TASK_EXECUTED, result=result)

    def close(self) -> None:
        """Stop every worker this set started."""
        workers, self._workers = self._workers, {}
        for worker in workers.values():
            worker.close()

    def __enter__(self) -> "CallbackSet":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _wires(results: Sequence[ResultLike]) -> list[Any]:
    """Results as the workers are sent them: an ExecutionResult in its wire form, the
    rest as they are.  A batch from the transfer engine holds only delivered files'
    tuples: its types are found in one pass in C, and it is copied as it is."""
    if not any(issubclass(kind, ExecutionResult) for kind in set(map(type, results))):
        return list(results)
    return [r.to_wire() if isinstance(r, ExecutionResult) else r for r in results]


class _Chunk:
    """One chunk of files going through a stage's callbacks, one :meth:`ask` per
    callback in order (:meth:`CallbackSet.run_stage_rows`' steps)."""

    __slots__ = (
        "_all",
        "callbacks",
        "columns",
        "common",
        "everyone",
        "gating",
        "rows",
        "sent",
        "wires",
    )

    def __init__(
        self,
        callbacks: CallbackSet,
        stage: Stage,
        rows: Sequence[NodeRow],
        results: Sequence[ResultLike] | None,
    ) -> None:
        count = len(rows)
        if results is not None and len(results) != count:
            raise ValueError(f"{len(results)} results for {count} nodes")
        self.callbacks = callbacks
        # Requests built by hand, not through CallbackRequest: a model per file and per
        # callback would cost more than the callback itself.  What every request shares
        # goes once per batch.
        self.common = {
            "id": callbacks.task_id,
            "stage": stage.value,
            "task": {"id": callbacks.task_id, "last_execution": None},
        }
        self.wires: list[Any] = _wires(results) if results is not None else [None] * count
        self.rows = list(rows)  # a file whose metadata a callback changes gets a new row
        self.columns = StageColumns(stage, [True] * count, [row[-1] for row in self.rows])
        self.gating = stage in _GATING_STAGES
        self.everyone = True  # no file has left the stage yet
        # The items last sent, by encoding: the next callback is sent the same bytes
        # while every file is still in play with the node it was sent (emptied on any
        # change).
        self.sent: dict[str, bytes] = {}
        self._all: list[BatchItem] | None = None  # every (row, result), while unchanged

    def all_items(self) -> list[BatchItem]:
        """Every file's (row, result), made once while no answer changed a row."""
        if self._all is None:
            self._all = list(zip(self.rows, self.wires, strict=True))
        return self._all

    def ask(self, index: int, definition: CallbackDefinition) -> bool:
        """Ask callback ``index`` about the files still in play; False when none is
        left (the callbacks after it have nothing to answer)."""
        columns = self.columns
        proceed, metadata, rows = columns.proceed, columns.metadata, self.rows
        count = len(rows)
        everyone = self.everyone
        live = list(range(count)) if everyone else list(compress(range(count), proceed))
        if not live:
            return False
        callbacks = self.callbacks
        if not callbacks.enabled(definition.language):
            columns.skipped.append((definition.name, live))
            return True
        wires = self.wires
        items = self.all_items() if everyone else [(rows[i], wires[i]) for i in live]
        encoded = None
        encoding = _batch_encoding(definition.language)
        if encoding is not None:
            encoded = self.sent.get(encoding)
            if encoded is None:
                encoded = self.sent[encoding] = BATCH_ENCODERS[encoding](items)
        answers = callbacks._call_many(index, self.common, items, encoded)
        columns.asked.append((definition, live, answers))
        changed = False
        gating = self.gating
        # An answer that changed nothing for its file: repeated (the same object,
        # see worker._repeat), it changes nothing for the next either.
        idle: Answer | None = None
        for i, answer in zip(live, answers, strict=True):
            if answer is idle:
                continue
            if not answer.ok:
                proceed[i] = False
                columns.failures[i] = (definition.name, answer.error)
                changed = True
                everyone = False
                continue
            new = answer.metadata
            same = new is None or new is metadata[i] or new == metadata[i]
            if not same:
                assert new is not None
                metadata[i] = new
                rows[i] = [*rows[i][:-1], new]
                changed = True
            if gating and not answer.truthy:
                proceed[i] = False
                changed = True
                everyone = False
            elif same:
                idle = answer
        self.everyone = everyone
        if changed:
            self.sent = {}
            self._all = None
        return True


class _Pipeline:
    """:meth:`CallbackSet.run_stage_chunks`' threads: one per callback of the stage,
    each taking the chunks in order from the one before it."""

    def __init__(self, asked: list[tuple[int, CallbackDefinition]]) -> None:
        self.queues: list[queue.SimpleQueue[_Chunk | BaseException | None]] = [
            queue.SimpleQueue() for _ in range(len(asked) + 1)
        ]
        #: Set when the caller stops taking chunks: those still queued are not asked.
        self.stopped = threading.Event()
        self.threads = [
            threading.Thread(
                target=self._run,
                args=(index, definition, self.queues[n], self.queues[n + 1], self.stopped),
                name=f"sf-callback-{n}",
                daemon=True,
            )
            for n, (index, definition) in enumerate(asked)
        ]
        for thread in self.threads:
            thread.start()

    @staticmethod
    def _run(
        index: int,
        definition: CallbackDefinition,
        todo: "queue.SimpleQueue[_Chunk | BaseException | None]",
        done: "queue.SimpleQueue[_Chunk | BaseException | None]",
        stopped: threading.Event,
    ) -> None:
        failed = False
        while (chunk := todo.get()) is not None:
            if failed or stopped.is_set() or isinstance(chunk, BaseException):
                done.put(chunk)
                continue
            try:
                # A chunk no file is left in skips the callbacks after it.
                chunk.ask(index, definition)
            except BaseException as exc:  # raised where the caller takes this chunk
                failed = True
                done.put(exc)
                continue
            done.put(chunk)
        done.put(None)

    def put(self, chunk: _Chunk) -> None:
        self.queues[0].put(chunk)

    def get(self) -> StageColumns:
        got = self.queues[-1].get()
        if isinstance(got, BaseException):
            raise got
        assert got is not None
        return got.columns

    def close(self) -> None:
        """Let the threads end and wait for them: a chunk a thread is asking about is
        answered (within the callback's timeout), the ones queued behind it are not."""
        self.stopped.set()
        self.queues[0].put(None)
        for thread in self.threads:
            thread.join()
