"""The user callbacks of one transfer, bound to the engine's hooks.

The engine knows files as `Entry` and delivered files as `FileResult`; callbacks see the
seed's `NodeInfo`.  This module translates, remembers the metadata a FILTER callback set
for each file so AFTER_RESULT_RECEIVED starts from it, and stores what
AFTER_RESULT_RECEIVED leaves (see tasks/transfer_metadata.py).
"""

import posixpath
import threading
from dataclasses import dataclass, field
from typing import Any

from prefect.logging import get_logger

from storeflow.models.transfer import TransferDefinition, protocol_kind
from storeflow.sandbox.models import ExecutionResult, NodeInfo, Stage
from storeflow.sandbox.stages import CallbackSet
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
        return any(c.stage is stage for c in self.callbacks.callbacks)

    @property
    def local_source(self) -> bool:
        return protocol_kind(self.definition.source) == "local"

    def initial_metadata(self, entry: Entry) -> dict[str, str]:
        # A local source file may carry metadata from an earlier transfer.
        return transfer_metadata.read(entry.path) if self.local_source else {}

    # -- FILTER ------------------------------------------------------------------------

    def file_filter(self, entry: Entry) -> bool:
        node = node_of(entry, entry.path, self.initial_metadata(entry))
        outcome = self.callbacks.filter(node)
        if outcome.failed:
            self.problems.append(
                f"{entry.name}: skipped, FILTER callback {outcome.failed_callback} failed: "
                f"{outcome.error}"
            )
            LOG.warning("%s", self.problems[-1])
        if outcome.keep:
            self.filtered[entry.name] = dict(outcome.metadata or {})
        return outcome.keep

    # -- AFTER_RESULT_RECEIVED ---------------------------------------------------------

    def after_result(self, result: FileResult) -> None:
        entry = result.entry
        metadata = self.filtered.get(entry.name)
        if metadata is None:
            metadata = self.initial_metadata(entry) if self.has(Stage.AFTER_RESULT_RECEIVED) else {}
        removed: list[str] = []
        if self.has(Stage.AFTER_RESULT_RECEIVED):
            node = node_of(entry, result.destinations[0], metadata)
            outcome = self.callbacks.after_result(
                node,
                ExecutionResult(
                    status="SUCCESS",
                    destination=result.destinations[0],
                    details={"destinations": list(result.destinations), "source": entry.path},
                ),
            )
            if outcome.failed:
                self.problems.append(
                    f"{entry.name}: AFTER_RESULT_RECEIVED callback {outcome.failed_callback} "
                    f"failed: {outcome.error}"
                )
                LOG.warning("%s", self.problems[-1])
            metadata = dict(outcome.metadata or metadata)
            removed = outcome.changes.removed
        if metadata or removed:
            self._store(result, metadata, removed)

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
