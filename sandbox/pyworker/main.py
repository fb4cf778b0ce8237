"""The Python callback worker: jail itself, then load one callback and
answer calls until stdin closes.

Protocol (all lines; JSON never contains a raw newline):
  host -> worker, on stdin:  one JSON object per line
      1. {"op": "config", ...jail settings, "channel_fd": N, "token": T}
      2. {"op": "load", "source": ..., "filename": ...}
      3. {"op": "call", "nonce": ..., "request": {...}}  (repeated), or
         {"op": "batch", "nonce": ..., "requests": [{...}, ...]}: one answer per
         request, in order, each as soon as it is ready, nonce + "." + its index
  worker -> host, on the inherited fd `channel_fd` (never stdout/stderr):
      b"\\x1e" + token + b" " + nonce + b" " + json + b"\\n"
The callback's own stdout and stderr are separate pipes the host only reads
as captured output.
"""

import builtins
import json
import os
import sys
import traceback
from typing import Any

from . import api, jail, utils

_MARK = b"\x1e"


class Channel:
    def __init__(self, fd: int, token: str, limit: int) -> None:
        self._fd = fd
        self._prefix = _MARK + token.encode("ascii") + b" "
        self._limit = limit

    def send(self, nonce: str, message: dict[str, Any]) -> None:
        body = json.dumps(message, ensure_ascii=True, default=repr).encode("ascii")
        if len(body) > self._limit:
            body = json.dumps(
                {"ok": False, "kind": "output_limit", "error": "result larger than the output cap"}
            ).encode("ascii")
        data = memoryview(self._prefix + nonce.encode("ascii") + b" " + body + b"\n")
        while data:
            data = data[os.write(self._fd, data) :]


def _read_message() -> dict[str, Any] | None:
    line = sys.stdin.buffer.readline()
    if not line:
        return None
    message: dict[str, Any] = json.loads(line)
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


def _call(namespace: dict[str, Any], run: Any, wire: dict[str, Any]) -> dict[str, Any]:
    req = api.Request(wire)
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
    if node is not None:
        metadata = dict(node.metadata)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            return {"ok": False, "kind": "exception", "error": "metadata must map str to str"}
    return {"ok": True, "result": _jsonable(value), "truthy": bool(value), "metadata": metadata}


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
        nonce = str(message["nonce"])
        if message.get("op") == "batch":
            # Many files per line read: the host pipelines instead of waiting per call.
            for index, request in enumerate(message["requests"]):
                channel.send(f"{nonce}.{index}", _call(namespace, run, request))
        else:
            channel.send(nonce, _call(namespace, run, message["request"]))
