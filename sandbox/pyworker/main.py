"""The Python callback worker: jail itself, then load one callback and
answer calls until stdin closes.

Protocol (all lines; JSON never contains a raw newline):
  host -> worker, on stdin:  one JSON object per line
      1. {"op": "config", ...jail settings, "channel_fd": N, "token": T}
      2. {"op": "load", "source": ..., "filename": ...}
      3. {"op": "call", "nonce": ..., "request": {...}}  (repeated), or
         {"op": "batch", "nonce": ..., "common": {"id", "stage", "task"},
          "items": [[node row, result], ...], "group_s": G}: one answer per item, in
         order, sent in groups (see _Batch); a result is an object, null, or a
         delivered file's [source, destination, ...] (expanded when the callback first
         asks for req.result).  The host sends the items
         marshalled: "items_marshal": N in the line, the N bytes right after it
  worker -> host, on the inherited fd `channel_fd` (never stdout/stderr):
      b"\\x1e" + token + b" " + nonce + b" " + json + b"\\n"
  a group of a batch's answers is one such line, nonce + "." + the index of its
  first answer, json {"answers": [answer, ...]}, a success as [result, truthy,
  metadata or null when unchanged], a failure as the failure object, and a bare
  integer N for "the answer before, N more times" (a filter that keeps every file
  sends a few bytes per group, not an answer per file)
The callback's own stdout and stderr are separate pipes the host only reads
as captured output.
"""

import builtins
import json
import marshal
import os
import sys
import time
import traceback
from typing import Any

from . import api, jail, utils

_MARK = b"\x1e"


class Channel:
    def __init__(self, fd: int, token: str, limit: int) -> None:
        self._fd = fd
        self._prefix = _MARK + token.encode("ascii") + b" "
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    def encode(self, message: dict[str, Any] | list[Any]) -> bytes:
        """One answer as JSON, replaced by an output_limit failure past the cap."""
        body = _ENCODER.encode(message).encode("ascii")
        if len(body) > self._limit:
            body = _TOO_BIG
        return body

    def send(self, nonce: str, message: dict[str, Any]) -> None:
        self.send_body(nonce, self.encode(message))

    def send_body(self, nonce: str, body: bytes) -> None:
        data = memoryview(self._prefix + nonce.encode("ascii") + b" " + body + b"\n")
        while data:
            data = data[os.write(self._fd, data) :]


# One encoder for every answer (json.dumps with an argument builds one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=True, default=repr)
_TOO_BIG = json.dumps(
    {"ok": False, "kind": "output_limit", "error": "result larger than the output cap"}
).encode("ascii")
# Room for the group's own JSON around its answers.
_GROUP_ROOM = 64
# After these failures the host replaces the worker: the rest of the batch goes to it.
_STOP_KINDS = {"memory", "output_limit"}


class _Batch:
    """A batch's answers, written a group per line: when the batch ends, before a call
    once the oldest unsent answer is ``group_s`` old, and before the line would pass
    the frame cap.  One write and one JSON line per group instead of per file; a call
    that hangs leaves at most ``group_s`` of answers unsent (the host, on a timeout,
    runs the unanswered calls again with ``group_s`` 0: one answer per line)."""

    def __init__(self, channel: Channel, nonce: str, group_s: float) -> None:
        self.channel = channel
        self.nonce = nonce
        self.group_s = group_s
        self.bodies: list[bytes] = []
        #: Answers in the group (a repeat counts each), and repeats of the last body.
        self.count = 0
        self.repeats = 0
        #: (result, truthy) of the last body when it is a simple success (add_success).
        self.last_simple: tuple[Any, bool] | None = None
        self.size = 0
        self.first = 0
        self.since = 0.0

    def before_call(self, index: int) -> None:
        if self.bodies and time.monotonic() - self.since >= self.group_s:
            self.flush()
        if not self.bodies:
            self.first = index
            self.since = time.monotonic()

    def add_success(self, result: Any, truthy: bool, metadata: Any) -> None:
        """A success, [result, truthy, metadata]: the usual one (True, False or None
        with metadata as sent) is known to repeat the one before without encoding it
        (singletons compared by identity: 1 == True, but not `is`)."""
        simple = metadata is None and (result is True or result is False or result is None)
        last = self.last_simple
        if simple and last is not None and last[0] is result and last[1] is truthy:
            self.repeats += 1
            self.count += 1
            return
        self.add([result, truthy, metadata])
        self.last_simple = (result, truthy) if simple else None

    def add(self, answer: dict[str, Any] | list[Any]) -> None:
        self.last_simple = None
        body = self.channel.encode(answer)
        if self.bodies and body == self.bodies[-1]:
            self.repeats += 1
            self.count += 1
            return
        self._end_repeats()
        if self.bodies and self.size + len(body) + _GROUP_ROOM > self.channel.limit:
            first = self.first + self.count
            self.flush()
            self.first = first
            self.since = time.monotonic()
        self.bodies.append(body)
        self.count += 1
        self.size += len(body) + 1

    def _end_repeats(self) -> None:
        if self.repeats:
            self.bodies.append(b"%d" % self.repeats)
            self.size += 21
            self.repeats = 0

    def flush(self) -> None:
        # The callbacks' output goes ahead of the group it was printed for: the host
        # hands it over with the group's first answer.
        sys.stdout.flush()
        sys.stderr.flush()
        self._end_repeats()
        if self.bodies:
            group = b'{"answers":[' + b",".join(self.bodies) + b"]}"
            self.channel.send_body(f"{self.nonce}.{self.first}", group)
        self.bodies = []
        self.last_simple = None
        self.count = 0
        self.size = 0


def _read_message() -> dict[str, Any] | None:
    line = sys.stdin.buffer.readline()
    if not line:
        return None
    message: dict[str, Any] = json.loads(line)
    size = message.get("items_marshal")
    if size is not None:
        # The batch's items follow the line: marshalled by the host, a third of
        # json.loads' work.  Only the host writes this pipe.
        data = sys.stdin.buffer.read(size)
        if len(data) != size:
            return None
        message["items"] = marshal.loads(data)
    return message


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)[:1000]
    return value


def _error(kind: str, exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(exc)
    # Drop the runtime's own frames: the callback's frames are what help.
    text = "".join(line for line in lines if "/rt/pyworker/" not in line)
    return {"ok": False, "kind": kind, "error": text.strip()[-4000:]}


def _load(message: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    namespace: dict[str, Any] = {
        "__name__": "callback",
        "__file__": message["filename"],
        "__builtins__": builtins,
    }
    code = compile(message["source"], message["filename"], "exec")
    exec(code, namespace)
    return namespace, namespace.get("run")


def _jsonable_fast(value: Any) -> Any:
    # What callbacks mostly return needs no trial encoding.
    if value is None or value is True or value is False or type(value) in (int, str):
        return value
    return _jsonable(value)


def _call(
    namespace: dict[str, Any], run: Any, req: api.Request, sent: dict[str, str] | None = None
) -> dict[str, Any]:
    """One run(req); ``sent``: the node's metadata as the host sent it (a batch's item),
    answered as that very dict when the call left it equal (no copy, no check)."""
    # The seed reads `task` as a free name in BEFORE_TASK_EXECUTED callbacks.
    namespace["task"] = req.task
    try:
        value = run(req)
    except MemoryError as exc:
        return _error("memory", exc)
    except BaseException as exc:
        return _error("exception", exc)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    node = req.node_info
    metadata = None
    if (
        node is not None
        and sent is not None
        and (not node.metadata_read() or node.metadata == sent)
    ):
        metadata = sent  # as sent (or never read): str -> str already
    elif node is not None:
        metadata = dict(node.metadata)
        if metadata and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            return {"ok": False, "kind": "exception", "error": "metadata must map str to str"}
    result = _jsonable_fast(value)
    return {"ok": True, "result": result, "truthy": bool(value), "metadata": metadata}


def _batch(channel: Channel, namespace: dict[str, Any], run: Any, message: dict[str, Any]) -> None:
    """A batch's items, each one run(req) as :func:`_call` runs it, written inline: a
    few microseconds a file are all a batch costs beside the callback itself."""
    common = message["common"]
    batch = _Batch(channel, str(message["nonce"]), float(message.get("group_s", 0)))
    # Every item of a batch has the same task: one Task for all of them.
    task = api.Task(common["task"])
    of = api.Request.of
    # A FILTER decides on the file: its callbacks read the node nearly always.
    node_now = common.get("stage") == "FILTER"
    add_success = batch.add_success
    monotonic = time.monotonic
    group_s = batch.group_s
    for index, (node, result) in enumerate(message["items"]):
        # _Batch.before_call, inline.
        if batch.bodies and monotonic() - batch.since >= group_s:
            batch.flush()
        if not batch.bodies:
            batch.first = index
            batch.since = monotonic()
        req = of(common, node, result, task, node_now)
        # The seed reads `task` as a free name in BEFORE_TASK_EXECUTED callbacks.
        namespace["task"] = task
        answer: dict[str, Any] | None = None
        try:
            value = run(req)
        except MemoryError as exc:
            answer = _error("memory", exc)
        except BaseException as exc:
            answer = _error("exception", exc)
        # Output is flushed as a group goes (see _Batch.flush), not per call: the host
        # hands a group's output over with its first answer either way.
        if answer is None:
            # A success as [result, truthy, metadata], metadata null when the call left
            # it as it came (or never read it): the host keeps what it sent.
            metadata = None
            # A node never read (still in its row) has the metadata it came with.
            info = req._made
            if info is not None and info._metadata is not None:  # metadata_read(), inline
                now = info.metadata
                if now != node[11]:
                    metadata = dict(now)
                    if not all(
                        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
                    ):
                        answer = {
                            "ok": False,
                            "kind": "exception",
                            "error": "metadata must map str to str",
                        }
            if answer is None:
                if metadata is None and (value is True or value is False or value is None):
                    # The usual answer, the same as the one before: counted (see
                    # _Batch.add_success), nothing encoded.
                    last = batch.last_simple
                    if last is not None and last[0] is value and last[1] is (value is True):
                        batch.repeats += 1
                        batch.count += 1
                        continue
                add_success(_jsonable_fast(value), bool(value), metadata)
                continue
        batch.add(answer)
        if answer["kind"] in _STOP_KINDS:
            break  # the host starts a fresh worker for the rest
    batch.flush()


def main() -> None:
    config = _read_message()
    if config is None or config.get("op") != "config":
        sys.exit(3)
    channel = Channel(int(config["channel_fd"]), str(config["token"]), int(config["frame_limit"]))
    os.chdir(config["scratch"])
    layers = jail.apply(config)
    channel.send("ready", {"ok": True, "layers": layers})
    # `import utils` in a callback must find the sandbox's module, nothing else.
    sys.modules["utils"] = utils
    load = _read_message()
    if load is None:
        return
    try:
        namespace, run = _load(load)
    except SyntaxError as exc:
        channel.send("load", _error("syntax", exc))
        return
    except BaseException as exc:
        channel.send("load", _error("exception", exc))
        return
    if not callable(run):
        channel.send(
            "load", {"ok": False, "kind": "no_entrypoint", "error": "callback defines no run(req)"}
        )
        return
    channel.send("load", {"ok": True})
    while (message := _read_message()) is not None:
        if message.get("op") == "batch":
            _batch(channel, namespace, run, message)
        else:
            answer = _call(namespace, run, api.Request(message["request"]))
            channel.send(str(message["nonce"]), answer)
