"""The objects a Python callback is handed, shaped like the seed's protobuf
messages: attribute access (`req.id`, `info.path`), Timestamp.ToDatetime(),
a str->str metadata map, and the task's last execution with its Progress.
"""

import datetime
import enum
from typing import Any

_EPOCH = datetime.datetime(1970, 1, 1)


class Progress(enum.IntFlag):
    PROGRESS_UNSPECIFIED = 0
    PROGRESS_INIT_STARTED = 1
    PROGRESS_INIT_DONE = 2
    PROGRESS_PROCESS_STARTED = 4
    PROGRESS_PROCESS_DONE = 8
    PROGRESS_FINAL_STARTED = 16
    PROGRESS_FINAL_DONE = 32
    PROGRESS_HAS_ERROR = 64
    PROGRESS_STOPPED = 128
    PROGRESS_STOPPED_BY_USER = 256
    PROGRESS_PAUSED = 512


class Timestamp:
    """google.protobuf.Timestamp's reading side."""

    __slots__ = ("nanos", "seconds")

    def __init__(self, seconds: int, nanos: int) -> None:
        self.seconds = seconds
        self.nanos = nanos

    def ToDatetime(self, tzinfo: datetime.tzinfo | None = None) -> datetime.datetime:
        # Like protobuf: naive UTC unless a tzinfo is given; microseconds truncated.
        naive = _EPOCH + datetime.timedelta(seconds=self.seconds, microseconds=self.nanos // 1000)
        if tzinfo is None:
            return naive
        return naive.replace(tzinfo=datetime.UTC).astimezone(tzinfo)

    def ToNanoseconds(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanos

    def ToMicroseconds(self) -> int:
        return self.ToNanoseconds() // 1000

    def ToMilliseconds(self) -> int:
        return self.ToNanoseconds() // 1_000_000

    def ToSeconds(self) -> int:
        return self.seconds

    def ToJsonString(self) -> str:
        return self.ToDatetime().isoformat() + "Z"

    def __repr__(self) -> str:
        return f"Timestamp(seconds={self.seconds}, nanos={self.nanos})"


class MetadataMap(dict[str, str]):
    """A protobuf map<string, string>: only strings go in."""

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError("metadata keys and values must be str")
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: str) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: str = "") -> str:
        if key not in self:
            self[key] = default
        return self[key]


def _timestamp(pair: list[int]) -> Timestamp:
    return Timestamp(int(pair[0]), int(pair[1]))


_TIME_FIELDS = {"atime": 5, "mtime": 7, "ctime": 9}


class NodeInfo:
    # A batch item's node: its row, from which the times and the metadata are made when
    # first read (see __getattr__ and metadata); None for a node made from a wire dict.
    _row: list[Any] | None = None
    # The metadata once made or assigned; None while a batch item's is still as sent.
    _metadata: dict[str, str] | None = None

    def __init__(self, wire: dict[str, Any]) -> None:
        self.path: str = wire["path"]
        self.mode: int = wire["mode"]
        self.uid: int = wire["uid"]
        self.gid: int = wire["gid"]
        self.size: int = wire["size"]
        self.atime = _timestamp(wire["atime"])
        self.mtime = _timestamp(wire["mtime"])
        self.ctime = _timestamp(wire["ctime"])
        self.metadata = MetadataMap(wire["metadata"])

    @classmethod
    def of_row(cls, row: list[Any]) -> "NodeInfo":
        """A batch item's node: [path, mode, uid, gid, size, atime s, ns, mtime s, ns,
        ctime s, ns, metadata] (sandbox/models.py:node_row)."""
        # The times become Timestamps and the metadata a MetadataMap when first read
        # (see __getattr__ and metadata): most callbacks look at a path or a size only,
        # and a node whose metadata was never read went back as it came.  Attributes
        # set one by one: CPython keeps them in the object (no dict of their own),
        # which costs half of building a dict and assigning it as __dict__, and a batch
        # makes a node per file.
        info = cls.__new__(cls)
        info.path = row[0]
        info.mode = row[1]
        info.uid = row[2]
        info.gid = row[3]
        info.size = row[4]
        info._row = row
        return info

    def __getattr__(self, name: str) -> Any:
        # Only reached for an attribute not set yet: a time of a batch item's node (its
        # metadata is the property below).
        row = self._row
        if row is None:
            raise AttributeError(name)
        offset = _TIME_FIELDS.get(name)
        if offset is None:
            raise AttributeError(name)
        stamp = Timestamp(int(row[offset]), int(row[offset + 1]))
        setattr(self, name, stamp)
        return stamp

    @property
    def metadata(self) -> dict[str, str]:
        """The seed's map<string, string>, made from a batch item's row when first read."""
        metadata = self._metadata
        if metadata is None:
            row = self._row
            metadata = self._metadata = MetadataMap(row[11] if row is not None else {})
        return metadata

    @metadata.setter
    def metadata(self, value: dict[str, str]) -> None:
        # Kept as given, like a read map changed in place: what goes back is checked.
        self._metadata = value

    def metadata_read(self) -> bool:
        """False while nobody has read or set this node's metadata (it is as sent)."""
        return self._metadata is not None

    def __repr__(self) -> str:
        return f"NodeInfo(path={self.path!r}, size={self.size})"


class TaskExecution:
    def __init__(self, wire: dict[str, Any]) -> None:
        self.progress = Progress(int(wire.get("progress", 0)))


class Task:
    def __init__(self, wire: dict[str, Any]) -> None:
        self.id: str = wire["id"]
        last = wire.get("last_execution")
        self.last_execution = TaskExecution(last) if last is not None else None

    def HasField(self, name: str) -> bool:
        return getattr(self, name, None) is not None


class ExecutionResult:
    """The outcome handed to AFTER_RESULT_RECEIVED / AFTER_TASK_EXECUTED."""

    def __init__(self, wire: dict[str, Any]) -> None:
        self.status: str = wire.get("status", "")
        self.error: str | None = wire.get("error")
        self.destination: str | None = wire.get("destination")
        self.details: dict[str, Any] = dict(wire.get("details") or {})


class _NodeFromRow:
    """Request.node_info of a batch item: the NodeInfo made from its row when first
    read, then kept in the request (an instance's own attribute wins over this)."""

    def __get__(self, req: "Request | None", owner: type) -> Any:
        if req is None:
            return self
        row = req._node_row
        info = req.node_info = req._made = NodeInfo.of_row(row) if row is not None else None
        return info


class Request:
    node_info: "NodeInfo | None" = _NodeFromRow()  # type: ignore[assignment]
    # A batch item's node row, until node_info is first read; its result as a delivered
    # file's [source, destination, ...], until result is first read (see __getattr__).
    _node_row: list[Any] | None = None
    _result_sent: list[str] | tuple[str, ...] | None = None
    # The batch item's NodeInfo once made (None: never read, so its metadata is as
    # sent): the batch loop asks this instead of node_info, which would make it.
    _made: "NodeInfo | None" = None

    def __init__(self, wire: dict[str, Any]) -> None:
        node = wire.get("node")
        self._fill(wire, NodeInfo(node) if node is not None else None, wire.get("result"))

    @classmethod
    def of(
        cls,
        common: dict[str, Any],
        node: list[Any] | None,
        result: dict[str, Any] | list[str] | tuple[str, ...] | None,
        task: "Task | None" = None,
        node_now: bool = False,
    ) -> "Request":
        """A request of a batch: the fields every item shares, then its own.  ``task``:
        the batch's Task (every item's is the same).  A result given as a delivered
        file's [source, destination, ...] becomes an ExecutionResult when the callback
        first reads it; the node too (see _NodeFromRow), unless
        ``node_now``: a stage whose callbacks nearly all read it (FILTER) gets it made
        at once, which costs less than making it on the first read."""
        # Attributes set one by one, as NodeInfo.of_row does (a batch builds a request
        # per file).
        req = cls.__new__(cls)
        req.id = common["id"]
        req.stage = common["stage"]
        req.task = task if task is not None else Task(common["task"])
        if node is None:
            req.node_info = None
        elif node_now:
            req.node_info = req._made = NodeInfo.of_row(node)
        else:
            req._node_row = node
        if result is None:
            req.result = None
        elif isinstance(result, dict):
            req.result = ExecutionResult(result)
        else:  # a delivered file's list: expanded when asked for
            req._result_sent = result
        return req

    def _fill(
        self, wire: dict[str, Any], node: NodeInfo | None, result: dict[str, Any] | None
    ) -> None:
        self.id: str = wire["id"]
        self.stage: str = wire["stage"]
        self.task = Task(wire["task"])
        self.node_info = node
        self.result = ExecutionResult(result) if result is not None else None

    def __getattr__(self, name: str) -> Any:
        # Only reached for an attribute not set yet: a result sent as a delivered file's
        # [source, destination, ...].
        sent = self._result_sent
        if name != "result" or sent is None:
            raise AttributeError(name)
        result = ExecutionResult(
            {
                "status": "SUCCESS",
                "error": None,
                "destination": sent[1],
                "details": {"destinations": list(sent[1:]), "source": sent[0]},
            }
        )
        self.result = result
        return result

    def __repr__(self) -> str:
        return f"Request(id={self.id!r}, stage={self.stage!r})"
