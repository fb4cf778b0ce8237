"""What goes into a callback and what comes out, as pydantic models."""

import enum
import os
import stat as stat_module
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

# The seed's Progress flags, defined once: the jailed runtime's copy is the
# definition (it can import nothing of the host's), and the host reuses it.
from storeflow.sandbox.pyworker.api import Progress


class Stage(enum.StrEnum):
    FILTER = "FILTER"
    BEFORE_TASK_EXECUTED = "BEFORE_TASK_EXECUTED"
    AFTER_RESULT_RECEIVED = "AFTER_RESULT_RECEIVED"
    AFTER_TASK_EXECUTED = "AFTER_TASK_EXECUTED"


class Language(enum.StrEnum):
    """Names of the shipped languages, for callers that spell them as constants.

    Wherever a language is expected, any registered name is accepted
    (sandbox/languages/); this enum lists only the two the project ships.
    """

    PYTHON = "python"
    JAVASCRIPT = "javascript"


_NS = 1_000_000_000


def _split_ns(value: int) -> list[int]:
    return [value // _NS, value % _NS]


#: A node as a batch item carries it: a flat list, cheaper to encode and decode than
#: the wire dict (JavaScript cannot hold nanoseconds since 1970 in one number):
#: [path, mode, uid, gid, size, atime s, ns, mtime s, ns, ctime s, ns, metadata]
NodeRow = list[Any]


class NodeFields(Protocol):
    """The stat fields a node carries (NodeInfo, and FileNode on the batch path)."""

    @property
    def path(self) -> str: ...
    @property
    def mode(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def gid(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def atime_ns(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def ctime_ns(self) -> int: ...


def node_row(node: NodeFields, metadata: dict[str, str], path: str | None = None) -> NodeRow:
    """`node` as a batch item carries it (:data:`NodeRow`); ``path``: another path than
    the node's own (a delivered file's, for AFTER_RESULT_RECEIVED)."""
    # A listing shares one int between times that are equal (tasks/transfer/local.py):
    # a time that is the mtime object is split once.
    mtime = node.mtime_ns
    m_s, m_n = divmod(mtime, _NS)
    atime = node.atime_ns
    a_s, a_n = (m_s, m_n) if atime is mtime else divmod(atime, _NS)
    ctime = node.ctime_ns
    c_s, c_n = (m_s, m_n) if ctime is mtime else divmod(ctime, _NS)
    return [node.path if path is None else path, node.mode, node.uid, node.gid, node.size,
            a_s, a_n, m_s, m_n, c_s, c_n, metadata]  # fmt: skip


def node_wire(node: NodeFields, metadata: dict[str, str]) -> dict[str, Any]:
    """`node` as a single call's request carries it."""
    return {
        "path": node.path,
        "mode": node.mode,
        "uid": node.uid,
        "gid": node.gid,
        "size": node.size,
        "atime": _split_ns(node.atime_ns),
        "mtime": _split_ns(node.mtime_ns),
        "ctime": _split_ns(node.ctime_ns),
        "metadata": metadata,
    }


class NodeInfo(BaseModel):
    """The stat of one file, computed by the host: callbacks never see the file."""

    model_config = ConfigDict(frozen=True)

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    metadata: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], metadata: dict[str, str] | None = None
    ) -> "NodeInfo":
        info = os.stat(path)
        if not (stat_module.S_ISREG(info.st_mode) or stat_module.S_ISDIR(info.st_mode)):
            raise ValueError(f"{path} is neither a regular file nor a directory")
        return cls(
            path=str(Path(path).absolute()),
            mode=info.st_mode,
            uid=info.st_uid,
            gid=info.st_gid,
            size=info.st_size,
            atime_ns=info.st_atime_ns,
            mtime_ns=info.st_mtime_ns,
            ctime_ns=info.st_ctime_ns,
            metadata=dict(metadata or {}),
        )

    @classmethod
    def of_row(cls, row: NodeRow) -> "NodeInfo":
        """The node a :data:`NodeRow` carries."""
        path, mode, uid, gid, size, a_s, a_n, m_s, m_n, c_s, c_n, metadata = row
        return cls(
            path=path,
            mode=mode,
            uid=uid,
            gid=gid,
            size=size,
            atime_ns=a_s * _NS + a_n,
            mtime_ns=m_s * _NS + m_n,
            ctime_ns=c_s * _NS + c_n,
            metadata=metadata,
        )

    def to_row(self) -> NodeRow:
        """This node as a batch item carries it (:data:`NodeRow`)."""
        return node_row(self, dict(self.metadata))

    def to_wire(self) -> dict[str, Any]:
        return node_wire(self, dict(self.metadata))


@dataclass(slots=True)
class FileNode:
    """:class:`NodeInfo`'s fields for the batch calls (``run_stage_many``): the host
    already has them from a listing, and a model per file would cost more than the
    callback's call."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    metadata: dict[str, str]

    def to_row(self) -> NodeRow:
        """This node as a batch item carries it (:data:`NodeRow`); the metadata is
        shared, not copied: a row is only encoded, never changed in place."""
        return node_row(self, self.metadata)

    def to_wire(self) -> dict[str, Any]:
        return node_wire(self, dict(self.metadata))


class TaskExecution(BaseModel):
    progress: Progress = Progress.PROGRESS_UNSPECIFIED


class TaskInfo(BaseModel):
    id: str
    last_execution: TaskExecution | None = None


class ExecutionResult(BaseModel):
    """A file's outcome (AFTER_RESULT_RECEIVED) or the task's (AFTER_TASK_EXECUTED)."""

    status: Literal["SUCCESS", "ERROR", "SKIPPED", "STOPPED"]
    error: str | None = None
    destination: str | None = None
    details: dict[str, JsonValue] = Field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """What the worker receives (the fields as they are: already JSON values)."""
        return {
            "status": self.status,
            "error": self.error,
            "destination": self.destination,
            "details": self.details,
        }


class CallbackRequest(BaseModel):
    stage: Stage
    task: TaskInfo
    node: NodeInfo | None = None
    result: ExecutionResult | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.task.id,
            "stage": self.stage.value,
            "task": {
                "id": self.task.id,
                "last_execution": (
                    {"progress": int(self.task.last_execution.progress)}
                    if self.task.last_execution is not None
                    else None
                ),
            },
            "node": self.node.to_wire() if self.node is not None else None,
            "result": self.result.to_wire() if self.result is not None else None,
        }


class ErrorKind(enum.StrEnum):
    EXCEPTION = "exception"
    SYNTAX = "syntax"
    NO_ENTRYPOINT = "no_entrypoint"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    CRASHED = "crashed"
    PROTOCOL = "protocol"
    ISOLATION = "isolation"
    BAD_CALLBACK = "bad_callback"


class CallbackFailure(BaseModel):
    kind: ErrorKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


class CallOutcome(BaseModel):
    """One callback's answer to one request."""

    ok: bool
    result: JsonValue = None
    truthy: bool = False
    metadata: dict[str, str] | None = None
    output: str = ""
    error: CallbackFailure | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class Answer:
    """One callback's answer to one request of a batch: :class:`CallOutcome`'s fields
    without a model per file (thousands per batch); :meth:`outcome` gives the model."""

    ok: bool
    result: Any = None
    truthy: bool = False
    metadata: dict[str, str] | None = None
    output: str = ""
    error: CallbackFailure | None = None
    seconds: float = 0.0

    def outcome(self) -> CallOutcome:
        return CallOutcome(
            ok=self.ok,
            result=self.result,
            truthy=self.truthy,
            metadata=self.metadata,
            output=self.output,
            error=self.error,
            seconds=self.seconds,
        )
