"""The user callbacks of one transfer, bound to the engine's hooks.

The engine knows files as `Entry` and delivered files as `FileResult`; callbacks see the
seed's `NodeInfo`.  This module translates, remembers the metadata a FILTER callback set
for each file so AFTER_RESULT_RECEIVED starts from it, and stores what
AFTER_RESULT_RECEIVED leaves (see tasks/transfer_metadata.py).
"""

import functools
import posixpath
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prefect.logging import get_logger

from storeflow.models.transfer import TransferDefinition, protocol_kind
from storeflow.sandbox.models import FileNode, NodeInfo, Stage
from storeflow.sandbox.stages import CallbackSet, FileOutcome, StageOutcome
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

    # -- FILTER ------------------------------------------------------------------------

    def file_filter(self, entry: Entry) -> bool:
        node = node_of(entry, entry.path, self.initial_metadata(entry))
        return self._filtered(entry, self.callbacks.filter(node))

    def batch_filter(self, entries: Sequence[Entry]) -> list[bool]:
        """FILTER for many files: each callback's worker gets them all in one batch."""
        nodes = [file_node(e, e.path, self.initial_metadata(e)) for e in entries]
        outcomes = self.callbacks.filter_many(nodes)
        return [self._filtered(e, o) for e, o in zip(entries, outcomes, strict=True)]

    def _filtered(self, entry: Entry, outcome: StageOutcome | FileOutcome) -> bool:
        if outcome.failed:
            self.problems.append(
                f"{entry.name}: skipped, FILTER callback {outcome.failed_callback} failed: "
                f"{outcome.error}"
            )
            LOG.warning("%s", self.problems[-1])
        if outcome.keep:
            # The outcome's metadata is its own (a copy of what was sent, or the
            # callbacks'): kept as it is.
            self.filtered[entry.name] = outcome.metadata or {}
        return outcome.keep

    # -- AFTER_RESULT_RECEIVED ---------------------------------------------------------

    def after_result(self, result: FileResult) -> None:
        self.after_results([result])

    def after_results(self, results: Sequence[FileResult]) -> None:
        """AFTER_RESULT_RECEIVED for a batch of delivered files (one batch per sandbox
        round trip), then the metadata stored on each file's temporary copy."""
        starting = [self._metadata_before(r.entry) for r in results]
        if not self.has(Stage.AFTER_RESULT_RECEIVED):
            for result, metadata in zip(results, starting, strict=True):
                if metadata:
                    self._store(result, metadata, [])
            return
        nodes = [
            file_node(r.entry, r.destinations[0], metadata)
            for r, metadata in zip(results, starting, strict=True)
        ]
        outcomes = self.callbacks.after_results(
            nodes,
            # ExecutionResult(status="SUCCESS", ...) in its wire form: no model per file.
            [
                {
                    "status": "SUCCESS",
                    "error": None,
                    "destination": r.destinations[0],
                    "details": {"destinations": list(r.destinations), "source": r.entry.path},
                }
                for r in results
            ],
        )
        for result, metadata, outcome in zip(results, starting, outcomes, strict=True):
            if outcome.failed:
                self.problems.append(
                    f"{result.entry.name}: AFTER_RESULT_RECEIVED callback "
                    f"{outcome.failed_callback} failed: {outcome.error}"
                )
                LOG.warning("%s", self.problems[-1])
            kept = outcome.metadata or metadata
            removed = outcome.removed
            if kept or removed:
                self._store(result, dict(kept), removed)

    def _metadata_before(self, entry: Entry) -> dict[str, str]:
        metadata = self.filtered.get(entry.name)
        if metadata is None:
            metadata = self.initial_metadata(entry) if self.has(Stage.AFTER_RESULT_RECEIVED) else {}
        return metadata

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
